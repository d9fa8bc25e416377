"""Dihedral test-time augmentation: detect on the 8 flips/rotations of each image and merge.

Shape shorthand: B images, S model input side, D detections per image. Galaxies have no
preferred orientation, so each of the 8 views (`ops.dihedral`) is an equally valid look at
an image. The model runs once on all 8B views; each view's boxes are mapped back to the
original frame and the 8 x D detections of an image are merged into D, by

- `"wbf"`: weighted box fusion (`ops.suppression.weighted_box_fusion`): a clump found in
  many views gets the score-weighted mean of its boxes and a score that counts the views
  agreeing on it (sum of scores / max(members, 8));
- `"nms"`: the postprocess layer's own steps again on the pooled detections: per-class NMS at
  `nms_iou`, then the class-agnostic stage; the best-scoring view's box wins.

Either merge ends with the class-agnostic stage of the postprocess (`agnostic_nms_iou`,
`containment_threshold`), so TTA output obeys the same duplicate rules as plain output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import tensorflow as tf

from gsfc_tf.ops import dihedral
from gsfc_tf.ops.suppression import suppress_duplicates, weighted_box_fusion

__all__ = ["DEFAULT_TTA_MERGE", "TTA_MERGES", "detect_dihedral"]

TTA_MERGES = ("wbf", "nms")
DEFAULT_TTA_MERGE = "wbf"


def _pool_views(views: Mapping[str, tf.Tensor], *, size: int) -> dict[str, tf.Tensor]:
    """Detections of the 8 views [8B, D] → one padded set per image [B, 8D] in the original frame.

    Real detections first, in descending score order, as `ops.suppression` expects.
    """
    count, num_slots = dihedral.NUM_DIHEDRAL, views["scores"].shape[1]

    def by_view(tensor):
        """[8B, D, ...] → [8, B, D, ...] (the views were concatenated transform-major)."""
        return tf.reshape(tensor, [count, -1, num_slots, *tensor.shape[2:]])

    def per_image(tensor):
        """[8, B, D, ...] → [B, 8D, ...]."""
        tail = tensor.shape[3:]
        moved = tf.transpose(tensor, [1, 0, 2, *range(3, 3 + len(tail))])
        return tf.reshape(moved, [-1, count * num_slots, *tail])

    boxes_yxyx = by_view(views["boxes"])
    boxes_yxyx = tf.stack([dihedral.transform_boxes(boxes_yxyx[draw], draw, size=size, inverse=True) for draw in range(count)])
    valid = per_image(by_view(tf.range(num_slots)[tf.newaxis] < views["num_detections"][:, tf.newaxis]))
    scores = per_image(by_view(views["scores"]))
    order = tf.argsort(tf.where(valid, scores, float("-inf")), axis=1, direction="DESCENDING", stable=True)
    return {
        "boxes": tf.gather(per_image(boxes_yxyx), order, batch_dims=1),
        "scores": tf.gather(scores, order, batch_dims=1),
        "classes": tf.gather(per_image(by_view(tf.cast(views["classes"], tf.int32))), order, batch_dims=1),
        "num_detections": tf.reduce_sum(tf.cast(valid, tf.int32), axis=1),
    }


def detect_dihedral(
    detect: Callable[[tf.Tensor], Mapping[str, tf.Tensor]],
    images: tf.Tensor,
    *,
    merge: str = DEFAULT_TTA_MERGE,
    nms_iou: float,
    agnostic_nms_iou: float | None,
    containment_threshold: float | None,
    max_detections: int,
    wbf_iou: float = 0.55,
) -> dict[str, tf.Tensor]:
    """Runs `detect` on the 8 dihedral views of `images` and merges the detections (module docstring).

    Args:
        detect: float32 [N, S, S, 3] → padded detections (`boxes` [N, D, 4] yxyx pixels,
            `scores`, `classes`, `num_detections`), e.g. a `FasterRCNN` called with training=False.
        images: float32 [B, S, S, 3], square.
        merge: `"wbf"` or `"nms"`.
        nms_iou: per-class NMS IoU of the `"nms"` merge (the model's `nms_iou`).
        agnostic_nms_iou, containment_threshold: the class-agnostic stage run after either
            merge (the model's settings); None skips a criterion.
        max_detections: D of the result.
        wbf_iou: IoU with a cluster's fused box that a detection must exceed to join it (the
            WBF paper's 0.55).

    Returns:
        Padded detections `boxes` float32 [B, D, 4] (yxyx pixels of `images`), `scores` [B, D],
        `classes` int32 [B, D], `num_detections` int32 [B]; slots past `num_detections` are 0.

    Raises:
        ValueError: an unknown `merge` or non-square images.
    """
    if merge not in TTA_MERGES:
        raise ValueError(f"TTA merge must be one of {', '.join(TTA_MERGES)}, got {merge!r}.")
    size = images.shape[1]
    if size is None or size != images.shape[2]:
        raise ValueError(f"Dihedral TTA needs square images of static size, got {images.shape}.")
    views = tf.concat([dihedral.transform_images(images, draw) for draw in range(dihedral.NUM_DIHEDRAL)], axis=0)
    pooled = _pool_views(detect(views), size=size)
    if merge == "wbf":
        merged = weighted_box_fusion(pooled, iou_threshold=wbf_iou, num_sources=dihedral.NUM_DIHEDRAL)
    else:
        merged = suppress_duplicates(pooled, iou_threshold=nms_iou, same_class_only=True)
    if agnostic_nms_iou is not None or containment_threshold is not None:
        merged = suppress_duplicates(merged, iou_threshold=agnostic_nms_iou, containment_threshold=containment_threshold)
    return {
        "boxes": merged["boxes"][:, :max_detections],
        "scores": merged["scores"][:, :max_detections],
        "classes": merged["classes"][:, :max_detections],
        "num_detections": tf.minimum(merged["num_detections"], max_detections),
    }
