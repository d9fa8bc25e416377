"""Faster R-CNN losses as pure functions returning named scalars.

Shape shorthand: B images, N anchors, R sampled ROIs per image, K foreground classes.
Every loss is a mean over this replica's sampled elements (torchvision's normalisation): the
classification terms average over sampled rows, the box terms sum over positive rows and
divide by the same sampled count. With no objects the box terms are exactly 0.
"""

from __future__ import annotations

import tensorflow as tf

from gsfc_tf import conventions

__all__ = ["roi_losses", "rpn_losses"]


def _smooth_l1(x, *, beta: float) -> tf.Tensor:
    """Elementwise smooth-L1 (Huber / beta), quadratic below `beta`."""
    abs_x = tf.abs(x)
    return tf.where(abs_x < beta, 0.5 * tf.square(x) / beta, abs_x - 0.5 * beta)


def _safe_mean(total, count):
    return total / tf.maximum(count, 1.0)


def rpn_losses(pred_objectness_logits, pred_deltas, gt_objectness, gt_deltas, sample_weights, *, beta: float = 1.0 / 9):
    """RPN objectness (binary cross-entropy) and box (smooth-L1 on positives) losses.

    Args:
        pred_objectness_logits: float32 [B, N].
        pred_deltas: float32 [B, N, 4].
        gt_objectness: float32 [B, N], 1 for foreground anchors, else 0.
        gt_deltas: float32 [B, N, 4], targets of the matched ground truth.
        sample_weights: float32 [B, N], 1 for the anchors sampled into the loss.

    Returns:
        `{"rpn_objectness": scalar, "rpn_box": scalar}`.
    """
    if pred_deltas.shape.rank != 3 or pred_objectness_logits.shape.rank != 2:
        raise ValueError(f"Expected logits [B, N] and deltas [B, N, 4], got {pred_objectness_logits.shape} and {pred_deltas.shape}.")
    num_sampled = tf.reduce_sum(sample_weights)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=gt_objectness, logits=pred_objectness_logits)
    box = tf.reduce_sum(_smooth_l1(pred_deltas - gt_deltas, beta=beta), axis=-1)
    positive = sample_weights * gt_objectness
    return {
        "rpn_objectness": _safe_mean(tf.reduce_sum(bce * sample_weights), num_sampled),
        "rpn_box": _safe_mean(tf.reduce_sum(box * positive), num_sampled),
    }


def roi_losses(pred_class_logits, pred_deltas, gt_classes, gt_deltas, sample_valid, *, beta: float = 1.0 / 9):
    """ROI classification (softmax cross-entropy) and class-specific box (smooth-L1) losses.

    Args:
        pred_class_logits: float32 [B, R, K + 1], class 0 is background.
        pred_deltas: float32 [B, R, K, 4], one box per foreground class, by dataset label.
        gt_classes: int32 [B, R] model classes in [0, K] (`conventions.to_model_class`).
        gt_deltas: float32 [B, R, 4].
        sample_valid: bool [B, R], slots holding a real sample.

    Returns:
        `{"roi_class": scalar, "roi_box": scalar}`.
    """
    if pred_deltas.shape.rank != 4 or pred_class_logits.shape.rank != 3:
        raise ValueError(f"Expected logits [B, R, K+1] and deltas [B, R, K, 4], got {pred_class_logits.shape} and {pred_deltas.shape}.")
    weights = tf.cast(sample_valid, tf.float32)
    num_sampled = tf.reduce_sum(weights)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=gt_classes, logits=pred_class_logits)
    # Only the delta of the ground-truth class is trained; background rows pick class 0's slot
    # and are masked out.
    class_deltas = tf.gather(pred_deltas, tf.maximum(conventions.from_model_class(gt_classes), 0), batch_dims=2)
    box = tf.reduce_sum(_smooth_l1(class_deltas - gt_deltas, beta=beta), axis=-1)
    positive = weights * tf.cast(gt_classes > conventions.BACKGROUND_CLASS, tf.float32)
    return {
        "roi_class": _safe_mean(tf.reduce_sum(ce * weights), num_sampled),
        "roi_box": _safe_mean(tf.reduce_sum(box * positive), num_sampled),
    }
