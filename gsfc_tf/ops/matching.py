"""Matching predictions (anchors or proposals) to ground truth by IoU.

Shape shorthand: B images, N anchors or proposals, M padded ground-truth boxes.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["match_boxes"]


def match_boxes(iou, *, fg_threshold: float, bg_threshold: float, allow_low_quality: bool):
    """Labels each row (anchor/proposal) foreground, background or ignored.

    Written here rather than using keras-cv's `BoxMatcher`, whose force-match also matches
    padded ground-truth columns (making row 0 positive) and keeps only one of tied best rows.

    Args:
        iou: float32 [B, N, M]; -1 where the ground truth is padding (see `box_iou`).
        fg_threshold: IoU >= this is foreground.
        bg_threshold: IoU < this is background; in between is ignored.
        allow_low_quality: also mark foreground, for each real ground truth, every row that
            ties for its highest IoU (> 0) — torchvision's `allow_low_quality_matches`.

    Returns:
        `(matched_gt, labels)`: int32 [B, N] index of the best ground truth (0 if none), and
        int32 [B, N] with 1 foreground, 0 background, -1 ignored.
    """
    if len(iou.shape) != 3:
        raise ValueError(f"`iou` must be [B, N, M], got shape {iou.shape}.")
    if bg_threshold > fg_threshold:
        raise ValueError(f"bg_threshold {bg_threshold} exceeds fg_threshold {fg_threshold}.")
    if iou.shape[-1] == 0:
        shape = tf.shape(iou)[:2]
        return tf.zeros(shape, tf.int32), tf.zeros(shape, tf.int32)
    best_iou = tf.reduce_max(iou, axis=-1)
    matched_gt = tf.argmax(iou, axis=-1, output_type=tf.int32)
    labels = tf.where(best_iou >= fg_threshold, 1, tf.where(best_iou < bg_threshold, 0, -1))
    if allow_low_quality:
        best_per_gt = tf.reduce_max(iou, axis=1, keepdims=True)
        ties = tf.logical_and(tf.equal(iou, best_per_gt), best_per_gt > 0.0)
        labels = tf.where(tf.reduce_any(ties, axis=-1), 1, labels)
    return matched_gt, labels
