"""Detections from ROI head outputs: decode, clip, per-class NMS, threshold, top-k, then
class-agnostic duplicate suppression, box voting and shared box sides.

The one post-processing of every path that returns detections: `predict_step`/`call`,
`detector.Detector` (which calls the model) and the SavedModel export (built from a
`Detector`). Shape shorthand: B images, R proposals, K foreground classes, D = max detections.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from gsfc_tf.ops.boxes import clip_boxes, decode_boxes
from gsfc_tf.ops.suppression import share_box_sides, suppress_duplicates, vote_boxes

__all__ = ["DetectionPostprocess"]


@keras.saving.register_keras_serializable(package="gsfc_tf")
class DetectionPostprocess(keras.layers.Layer):
    """Turns proposals + head outputs into padded detections.

    Uses `tf.image.combined_non_max_suppression` (one fused, batched, per-class NMS op), then
    `suppress_duplicates` across classes: per-class NMS keeps a `clump` and an `odd_clump` box
    on one clump, and a small box nested in a large one passes NMS at any IoU threshold.
    Decoding, scores and NMS are float32 whatever the global dtype policy (the layer's policy
    defaults to float32).

    Args:
        image_size: S, the side of the (square) input image; boxes are clipped to it.
        box_weights: the ROI head's box-coding weights `(wy, wx, wh, ww)`.
        score_threshold: keep detections scoring above this.
        nms_iou: per-class NMS IoU threshold.
        max_detections: D.
        agnostic_nms_iou: class-agnostic NMS IoU threshold after the per-class NMS (Popp et al.
            ran 0.2 before scoring); None skips it.
        containment_threshold: also drop a detection whose intersection with a higher-scoring
            kept one, over the smaller box's area, is at least this; None skips it.
        box_voting_iou: then each detection's box becomes the mean of the decoded boxes (all
            classes, scoring above `score_threshold`) overlapping it at least this much,
            weighted by score ** 8 (`vote_boxes`); None keeps the boxes as they are.
        side_sharing: after voting, each box's side moves this fraction of the way to the
            score ** 8-weighted mean side of its image's detections (`share_box_sides`).
            None (or 0) keeps the sides.

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
        agnostic_nms_iou: float | None = None,
        containment_threshold: float | None = None,
        box_voting_iou: float | None = None,
        side_sharing: float | None = None,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.image_size = image_size
        self.box_weights = tuple(box_weights)
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.max_detections = max_detections
        self.agnostic_nms_iou = agnostic_nms_iou
        self.containment_threshold = containment_threshold
        self.box_voting_iou = box_voting_iou
        self.side_sharing = side_sharing

    @classmethod
    def for_detector(cls, config, **kwargs) -> DetectionPostprocess:
        """The layer with a `DetectorConfig`'s post-processing settings; `kwargs` go to the Keras layer."""
        return cls(
            image_size=config.image_size,
            box_weights=config.roi_box_weights,
            score_threshold=config.score_threshold,
            nms_iou=config.nms_iou,
            max_detections=config.max_detections,
            agnostic_nms_iou=config.agnostic_nms_iou,
            containment_threshold=config.containment_threshold,
            box_voting_iou=config.box_voting_iou,
            side_sharing=config.side_sharing,
            **kwargs,
        )

    def call(self, proposals_yxyx, class_logits, deltas):
        if deltas.shape.rank != 4 or class_logits.shape[-1] != deltas.shape[2] + 1:
            raise ValueError(f"Expected logits [B, R, K+1] and deltas [B, R, K, 4], got {class_logits.shape} and {deltas.shape}.")
        boxes_yxyx = clip_boxes(decode_boxes(proposals_yxyx[:, :, tf.newaxis], deltas, weights=self.box_weights), self.image_size)
        real = tf.reduce_max(proposals_yxyx, axis=-1, keepdims=True) >= 0.0
        # Without the background column, column k is dataset label k (`conventions.from_model_class`).
        class_scores = tf.where(real, tf.nn.softmax(class_logits, axis=-1)[..., 1:], 0.0)
        # clip_boxes=False: its clipping assumes normalised coordinates; ours are clipped pixels.
        boxes, scores, classes, num = tf.image.combined_non_max_suppression(
            boxes_yxyx,
            class_scores,
            max_output_size_per_class=self.max_detections,
            max_total_size=self.max_detections,
            iou_threshold=self.nms_iou,
            score_threshold=self.score_threshold,
            clip_boxes=False,
        )
        detections = {"boxes": boxes, "scores": scores, "classes": tf.cast(classes, tf.int32), "num_detections": num}
        candidates = None
        if self.box_voting_iou is not None:
            # Every class's box of every proposal is a candidate: [B, R, K, ...] -> [B, R x K, ...].
            batch = tf.shape(boxes_yxyx)[0]
            voters = tf.where(class_scores > self.score_threshold, class_scores, 0.0)
            candidates = (tf.reshape(boxes_yxyx, [batch, -1, 4]), tf.reshape(voters, [batch, -1]))
        return self.refine(detections, candidates)

    def refine(self, detections, candidates=None) -> dict[str, tf.Tensor]:
        """The stages after per-class NMS, in order: class-agnostic suppression, box voting, shared sides.

        Public so that a detector with its own per-class NMS (the torchvision parity bench) gets
        exactly these stages.

        Args:
            detections: padded detections after per-class NMS (`ops.suppression`'s layout).
            candidates: (boxes float32 [B, C, 4] yxyx pixels, scores float32 [B, C]) to vote
                with, 0 for a box that must not vote; needed when `box_voting_iou` is set.

        Raises:
            ValueError: `box_voting_iou` is set and no candidates were given.
        """
        if self.agnostic_nms_iou is not None or self.containment_threshold is not None:
            detections = suppress_duplicates(
                detections, iou_threshold=self.agnostic_nms_iou, containment_threshold=self.containment_threshold
            )
        if self.box_voting_iou is not None:
            if candidates is None:
                raise ValueError("box_voting_iou is set but no candidate boxes were given to vote with.")
            detections = vote_boxes(detections, *candidates, iou_threshold=self.box_voting_iou)
        if not self.side_sharing:
            return detections
        return share_box_sides(detections, fraction=self.side_sharing, image_size=self.image_size)

    def get_config(self):
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "box_weights": self.box_weights,
            "score_threshold": self.score_threshold,
            "nms_iou": self.nms_iou,
            "max_detections": self.max_detections,
            "agnostic_nms_iou": self.agnostic_nms_iou,
            "containment_threshold": self.containment_threshold,
            "box_voting_iou": self.box_voting_iou,
            "side_sharing": self.side_sharing,
        }
