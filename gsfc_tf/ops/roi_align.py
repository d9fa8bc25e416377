"""ROI align (`aligned=True`) on one feature map and across FPN levels.

Written here because keras-cv's `ROIAligner` is broken (keras-cv#2449). Built on
`tf.image.crop_and_resize`, which bilinearly samples a regular grid and has a gradient.

Shape shorthand: B images, H x W feature cells, C channels, K boxes, R boxes per image,
P output bins per side, L pyramid levels.
"""

from __future__ import annotations

import math

import tensorflow as tf

__all__ = ["assign_fpn_levels", "multilevel_roi_align", "roi_align"]


def roi_align(features, boxes_yxyx, box_indices, *, output_size: int, spatial_scale: float, sampling_ratio: int = 2):
    """Average of `sampling_ratio`^2 bilinear samples per bin, as `torchvision.ops.roi_align(aligned=True)`.

    Args:
        features: float32 [B, H, W, C].
        boxes_yxyx: float32 [K, 4] in image pixels.
        box_indices: int32 [K], the image each box belongs to.
        output_size: P.
        spatial_scale: feature cells per image pixel (1 / stride).
        sampling_ratio: samples per bin side (fixed, not torchvision's adaptive -1).

    Returns:
        float32 [K, P, P, C].
    """
    if features.shape.rank != 4 or boxes_yxyx.shape.rank != 2 or boxes_yxyx.shape[-1] != 4:
        raise ValueError(f"Expected features [B, H, W, C] and boxes [K, 4], got {features.shape} and {boxes_yxyx.shape}.")
    n = output_size * sampling_ratio
    # torchvision clamps samples in [-1, 0) and (size - 1, size] to the border cell and zeroes
    # the rest; a 1-cell edge-replicating pad makes crop_and_resize's zero extrapolation agree.
    padded = tf.pad(features, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    height = tf.cast(tf.shape(features)[1], tf.float32)
    width = tf.cast(tf.shape(features)[2], tf.float32)
    # Feature-cell coordinates (aligned: pixel centres shift by -0.5), then the first and last
    # of n evenly spaced sample centres, shifted +1 for the pad and normalised as crop_and_resize wants.
    y1, x1, y2, x2 = tf.unstack(boxes_yxyx * spatial_scale - 0.5, axis=-1)
    step_y = (y2 - y1) / n
    step_x = (x2 - x1) / n
    first_y, last_y = y1 + 0.5 * step_y + 1.0, y2 - 0.5 * step_y + 1.0
    first_x, last_x = x1 + 0.5 * step_x + 1.0, x2 - 0.5 * step_x + 1.0
    crop_boxes = tf.stack([first_y / (height + 1.0), first_x / (width + 1.0), last_y / (height + 1.0), last_x / (width + 1.0)], axis=-1)
    samples = tf.image.crop_and_resize(padded, crop_boxes, box_indices, (n, n), method="bilinear", extrapolation_value=0.0)
    if sampling_ratio == 1:
        return samples
    return tf.nn.avg_pool2d(samples, sampling_ratio, sampling_ratio, "VALID")


def assign_fpn_levels(boxes_yxyx, *, min_level: int, max_level: int, canonical_size: float, canonical_level: int):
    """FPN level per box: `floor(canonical_level + log2(sqrt(area) / canonical_size))`, clamped.

    Args:
        boxes_yxyx: float32 [..., 4] in image pixels.

    Returns:
        int32 [...] levels in `[min_level, max_level]`.
    """
    heights = boxes_yxyx[..., 2] - boxes_yxyx[..., 0]
    widths = boxes_yxyx[..., 3] - boxes_yxyx[..., 1]
    side = tf.sqrt(tf.maximum(heights * widths, 1e-12))
    # The 1e-6 matches torchvision's LevelMapper so boxes exactly at a boundary agree.
    level = tf.floor(canonical_level + tf.math.log(side / canonical_size) / math.log(2.0) + 1e-6)
    return tf.cast(tf.clip_by_value(level, min_level, max_level), tf.int32)


def multilevel_roi_align(
    features: list,
    boxes_yxyx,
    *,
    min_level: int,
    output_size: int,
    canonical_size: float,
    canonical_level: int,
    sampling_ratio: int = 2,
):
    """ROI align of each box on the pyramid level chosen by `assign_fpn_levels`.

    Each level only pools its own boxes (partition → align → stitch), so cost does not grow
    with the number of levels.

    Args:
        features: L float32 maps `[B, Hl, Wl, C]`, level `min_level + l` with stride 2**level.
        boxes_yxyx: float32 [B, R, 4] in image pixels.

    Returns:
        float32 [B, R, P, P, C].
    """
    if boxes_yxyx.shape.rank != 3 or boxes_yxyx.shape[-1] != 4:
        raise ValueError(f"`boxes_yxyx` must be [B, R, 4], got shape {boxes_yxyx.shape}.")
    num_levels = len(features)
    batch_size, num_rois = tf.shape(boxes_yxyx)[0], tf.shape(boxes_yxyx)[1]
    flat_boxes = tf.reshape(boxes_yxyx, [-1, 4])
    box_indices = tf.repeat(tf.range(batch_size), num_rois)
    levels = assign_fpn_levels(
        flat_boxes,
        min_level=min_level,
        max_level=min_level + num_levels - 1,
        canonical_size=canonical_size,
        canonical_level=canonical_level,
    )
    positions = tf.dynamic_partition(tf.range(batch_size * num_rois), levels - min_level, num_levels)
    pooled = [
        roi_align(
            level_features,
            tf.gather(flat_boxes, level_positions),
            tf.gather(box_indices, level_positions),
            output_size=output_size,
            spatial_scale=2.0 ** -(min_level + offset),
            sampling_ratio=sampling_ratio,
        )
        for offset, (level_features, level_positions) in enumerate(zip(features, positions))
    ]
    stitched = tf.dynamic_stitch(positions, pooled)
    channels = features[0].shape[-1]
    return tf.reshape(stitched, [batch_size, num_rois, output_size, output_size, channels])
