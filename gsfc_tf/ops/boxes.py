"""Box geometry: IoU, containment, delta coding, clipping and changes of frame.

Shape shorthand: B images, N and K box counts. Boxes are absolute-pixel `[y1, x1, y2, x2]`
float32; padded boxes are all -1. Deltas are `[dy, dx, dh, dw]` (keras `center_yxhw` order).
The IoU rule and the window frames are `gsfc_tf.conventions`'; these are their graph versions.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from gsfc_tf import conventions

__all__ = ["box_containment", "box_iou", "clip_boxes", "decode_boxes", "encode_boxes", "from_window", "to_window"]

# torchvision's `bbox_xform_clip`: caps exp(dh), exp(dw) at 1000/16 so early, untrained
# deltas cannot overflow to inf.
_LOG_SCALE_CLIP = math.log(1000.0 / 16)


def _check_last_dim(name: str, boxes: tf.Tensor) -> None:
    if boxes.shape[-1] != 4:
        raise ValueError(f"`{name}` must end in 4 coordinates, got shape {boxes.shape}.")


def _pairwise_overlap(boxes1_yxyx, boxes2_yxyx):
    """(intersection, area1, area2, padded) of every pair, broadcast to [..., N, K]."""
    _check_last_dim("boxes1_yxyx", boxes1_yxyx)
    _check_last_dim("boxes2_yxyx", boxes2_yxyx)
    a = boxes1_yxyx[..., :, tf.newaxis, :]
    b = boxes2_yxyx[..., tf.newaxis, :, :]
    inter_h = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    inter_w = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    padded = tf.logical_or(tf.reduce_max(a, axis=-1) < 0.0, tf.reduce_max(b, axis=-1) < 0.0)  # all negative
    return inter_h * inter_w, area_a, area_b, padded


def box_iou(boxes1_yxyx, boxes2_yxyx) -> tf.Tensor:
    """Pairwise IoU, `conventions.pairwise_iou`'s rule: 0 for an empty union, -1 for a padded pair.

    Written here because keras' `compute_iou(use_masking=True)` fails on mixed ranks
    (unbatched anchors against batched ground truth).

    Args:
        boxes1_yxyx: float32 [N, 4] or [B, N, 4].
        boxes2_yxyx: float32 [K, 4] or [B, K, 4].

    Returns:
        float32 [N, K], or [B, N, K] if either input is batched.
    """
    intersection, area_a, area_b, padded = _pairwise_overlap(boxes1_yxyx, boxes2_yxyx)
    iou = tf.math.divide_no_nan(intersection, area_a + area_b - intersection)
    return tf.where(padded, conventions.PADDED_IOU, iou)


def box_containment(boxes1_yxyx, boxes2_yxyx) -> tf.Tensor:
    """Pairwise intersection over the area of the smaller box of each pair; padded pairs get -1.

    1 when one box lies inside the other, however different their sizes, which IoU is not.

    Args:
        boxes1_yxyx: float32 [N, 4] or [B, N, 4].
        boxes2_yxyx: float32 [K, 4] or [B, K, 4].

    Returns:
        float32 [N, K], or [B, N, K] if either input is batched; 0 for a pair with an empty box.
    """
    intersection, area_a, area_b, padded = _pairwise_overlap(boxes1_yxyx, boxes2_yxyx)
    return tf.where(padded, conventions.PADDED_IOU, tf.math.divide_no_nan(intersection, tf.minimum(area_a, area_b)))


def encode_boxes(anchors_yxyx, boxes_yxyx, *, weights=(1.0, 1.0, 1.0, 1.0)) -> tf.Tensor:
    """Encodes boxes as deltas from anchors (Faster R-CNN parametrisation).

    Args:
        anchors_yxyx: float32 [..., 4], broadcastable against `boxes_yxyx`.
        boxes_yxyx: float32 [..., 4].
        weights: multipliers `(wy, wx, wh, ww)` (torchvision's `(wx, wy, ww, wh)` reordered).

    Returns:
        float32 deltas `[dy, dx, dh, dw]`, shaped like `boxes_yxyx`.
    """
    _check_last_dim("anchors_yxyx", anchors_yxyx)
    _check_last_dim("boxes_yxyx", boxes_yxyx)
    variance = [1.0 / w for w in weights]
    return keras.utils.bounding_boxes.encode_box_to_deltas(anchors_yxyx, boxes_yxyx, "yxyx", "yxyx", variance=variance)


def decode_boxes(anchors_yxyx, deltas, *, weights=(1.0, 1.0, 1.0, 1.0)) -> tf.Tensor:
    """Inverse of `encode_boxes`, with torchvision's clamp on the log-scale deltas.

    Args:
        anchors_yxyx: float32 [..., 4], broadcastable against `deltas`.
        deltas: float32 [..., 4] `[dy, dx, dh, dw]`.
        weights: the same `(wy, wx, wh, ww)` used to encode.

    Returns:
        float32 boxes `[..., 4]` in `yxyx` pixels.
    """
    _check_last_dim("anchors_yxyx", anchors_yxyx)
    _check_last_dim("deltas", deltas)
    weights = tf.constant(weights, tf.float32)
    deltas = deltas / weights
    deltas = tf.concat([deltas[..., :2], tf.minimum(deltas[..., 2:], _LOG_SCALE_CLIP)], axis=-1)
    # keras' decoder only takes [N, 4] anchors against [N, 4] / [B, N, 4] deltas; the same
    # four lines below work for any broadcastable pair.
    heights = anchors_yxyx[..., 2] - anchors_yxyx[..., 0]
    widths = anchors_yxyx[..., 3] - anchors_yxyx[..., 1]
    center_y = anchors_yxyx[..., 0] + 0.5 * heights + deltas[..., 0] * heights
    center_x = anchors_yxyx[..., 1] + 0.5 * widths + deltas[..., 1] * widths
    half_h = 0.5 * heights * tf.exp(deltas[..., 2])
    half_w = 0.5 * widths * tf.exp(deltas[..., 3])
    return tf.stack([center_y - half_h, center_x - half_w, center_y + half_h, center_x + half_w], axis=-1)


def clip_boxes(boxes_yxyx, image_size: int) -> tf.Tensor:
    """Clips `[..., 4]` boxes to a square image of side `image_size` pixels."""
    _check_last_dim("boxes_yxyx", boxes_yxyx)
    return tf.clip_by_value(boxes_yxyx, 0.0, float(image_size))


def _with_known_or_four_coordinates(boxes_yxyx) -> tf.Tensor:
    """`boxes_yxyx` as a tensor; a static last dimension must be 4 (an unknown one passes)."""
    boxes_yxyx = tf.convert_to_tensor(boxes_yxyx)
    if boxes_yxyx.shape.rank is not None and boxes_yxyx.shape[-1] is not None:
        _check_last_dim("boxes_yxyx", boxes_yxyx)
    return boxes_yxyx


def _per_coordinate(pair, dtype) -> tf.Tensor:
    """A (y, x) pair [2] (or one number for both) as the [4] factors of a yxyx box."""
    pair = tf.broadcast_to(tf.cast(pair, dtype), [2])
    return tf.tile(pair, [2])


def to_window(boxes_yxyx, *, scale_yx=1.0, offset_yx=None) -> tf.Tensor:
    """Boxes of an outer frame in a window of it: (boxes - offset) * scale (`conventions.to_window`).

    Args:
        boxes_yxyx: float [..., 4] boxes in the outer frame.
        scale_yx: window pixels per outer unit, [2] (y, x) or a scalar.
        offset_yx: the window's top-left corner in the outer frame, [2] (y, x) or a scalar; None for 0.

    Returns:
        [..., 4] boxes in the window frame, of `boxes_yxyx`'s dtype.
    """
    boxes_yxyx = _with_known_or_four_coordinates(boxes_yxyx)
    if offset_yx is not None:
        boxes_yxyx = boxes_yxyx - _per_coordinate(offset_yx, boxes_yxyx.dtype)
    return boxes_yxyx * _per_coordinate(scale_yx, boxes_yxyx.dtype)


def from_window(boxes_yxyx, *, scale_yx=1.0, offset_yx=None) -> tf.Tensor:
    """Inverse of `to_window`: boxes / scale + offset, in the outer frame (`conventions.from_window`)."""
    boxes_yxyx = _with_known_or_four_coordinates(boxes_yxyx)
    boxes_yxyx = boxes_yxyx / _per_coordinate(scale_yx, boxes_yxyx.dtype)
    if offset_yx is not None:
        boxes_yxyx = boxes_yxyx + _per_coordinate(offset_yx, boxes_yxyx.dtype)
    return boxes_yxyx
