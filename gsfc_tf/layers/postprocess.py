"""Detections from ROI head outputs: decode, clip, per-class NMS, threshold, top-k.

Shared by `predict_step` and the SavedModel export. Shape shorthand: B images, R proposals,
K foreground classes, D = max detections.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from gsfc_tf.ops.boxes import clip_boxes, decode_boxes

__all__ = ["DetectionPostprocess"]


@keras.saving.register_keras_serializable(package="gsfc_tf")
class DetectionPostprocess(keras.layers.Layer):
    """Turns proposals + head outputs into padded detections.

    Uses `tf.image.combined_non_max_suppression` (one fused, batched, per-class NMS op).

    Call args:
        proposals_yxyx: float32 [B, R, 4]; padded proposals are all -1.
        class_logits: float32 [B, R, K + 1], class 0 background.
        deltas: float32 [B, R, K, 4].

    Returns:
        dict: `boxes` float32 [B, D, 4] yxyx pixels, `scores` float32 [B, D], `classes` int32
        [B, D] dataset ids in [0, K) (foreground class k + 1 -> id k), `num_detections` int32 [B].
        Slots past `num_detections` are zero.
    """

    def __init__(
        self,
        *,
        image_size: int,
        box_weights=(10.0, 10.0, 5.0, 5.0),
        score_threshold: float = 0.05,
        nms_iou: float = 0.5,
        max_detections: int = 100,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.box_weights = tuple(box_weights)
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.max_detections = max_detections

    def call(self, proposals_yxyx, class_logits, deltas):
        if deltas.shape.rank != 4 or class_logits.shape[-1] != deltas.shape[2] + 1:
            raise ValueError(f"Expected logits [B, R, K+1] and deltas [B, R, K, 4], got {class_logits.shape} and {deltas.shape}.")
        boxes_yxyx = clip_boxes(decode_boxes(proposals_yxyx[:, :, tf.newaxis], deltas, weights=self.box_weights), self.image_size)
        scores = tf.nn.softmax(class_logits, axis=-1)[..., 1:]
        real = tf.reduce_max(proposals_yxyx, axis=-1, keepdims=True) >= 0.0
        scores = tf.where(real, scores, 0.0)
        # clip_boxes=False: its clipping assumes normalised coordinates; ours are clipped pixels.
        boxes, scores, classes, num = tf.image.combined_non_max_suppression(
            boxes_yxyx,
            scores,
            max_output_size_per_class=self.max_detections,
            max_total_size=self.max_detections,
            iou_threshold=self.nms_iou,
            score_threshold=self.score_threshold,
            clip_boxes=False,
        )
        return {"boxes": boxes, "scores": scores, "classes": tf.cast(classes, tf.int32), "num_detections": num}

    def get_config(self):
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "box_weights": self.box_weights,
            "score_threshold": self.score_threshold,
            "nms_iou": self.nms_iou,
            "max_detections": self.max_detections,
        }
