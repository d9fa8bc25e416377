"""ROI align against torchvision.ops.roi_align and MultiScaleRoIAlign."""

import numpy as np
import pytest
import tensorflow as tf
import torch
import torchvision

from gsfc_tf.ops import assign_fpn_levels, multilevel_roi_align, roi_align


def _rois(rng, n, image_size, min_side=2.0, max_side=60.0):
    side = rng.uniform(min_side, max_side, (n, 2))
    corner = rng.uniform(-5, image_size - 5, (n, 2))
    return np.concatenate([corner, corner + side], axis=1).astype(np.float32)


def _torch_rois(boxes_yxyx, batch_index):
    return torch.from_numpy(np.concatenate([batch_index[:, None], boxes_yxyx[:, [1, 0, 3, 2]]], axis=1).astype(np.float32))


@pytest.mark.parametrize("stride,sampling_ratio", [(4, 2), (8, 2), (16, 1)])
def test_roi_align_matches_torchvision(stride, sampling_ratio):
    rng = np.random.default_rng(stride)
    features = rng.normal(size=(2, 64 // stride * 2, 64 // stride * 2, 3)).astype(np.float32)
    boxes = _rois(rng, 40, 128)
    batch_index = rng.integers(0, 2, 40).astype(np.int32)
    expected = torchvision.ops.roi_align(
        torch.from_numpy(features).permute(0, 3, 1, 2),
        _torch_rois(boxes, batch_index),
        output_size=7,
        spatial_scale=1.0 / stride,
        sampling_ratio=sampling_ratio,
        aligned=True,
    ).permute(0, 2, 3, 1)
    pooled = roi_align(
        tf.constant(features), tf.constant(boxes), tf.constant(batch_index), output_size=7, spatial_scale=1.0 / stride, sampling_ratio=sampling_ratio
    )
    np.testing.assert_allclose(pooled.numpy(), expected.numpy(), atol=1e-4)


def test_multilevel_roi_align_matches_torchvision_level_mapper():
    # MultiScaleRoIAlign itself pools with aligned=False, so the reference is torchvision's
    # LevelMapper choosing the level and torchvision.ops.roi_align(aligned=True) pooling on it.
    rng = np.random.default_rng(7)
    image_size = 128
    features = [rng.normal(size=(2, image_size // 2**k, image_size // 2**k, 4)).astype(np.float32) for k in (2, 3, 4, 5)]
    boxes = _rois(rng, 2 * 30, image_size, max_side=120).reshape(2, 30, 4)
    flat = boxes.reshape(-1, 4)
    mapper = torchvision.ops.poolers.LevelMapper(2, 5, canonical_scale=56, canonical_level=4)
    expected_levels = mapper([torch.from_numpy(b[:, [1, 0, 3, 2]].copy()) for b in boxes]).numpy() + 2
    levels = assign_fpn_levels(tf.constant(flat), min_level=2, max_level=5, canonical_size=56, canonical_level=4).numpy()
    np.testing.assert_array_equal(levels, expected_levels)
    assert len(np.unique(levels)) >= 3, "the random boxes should exercise several levels"

    batch_index = np.repeat(np.arange(2), 30)
    expected = np.zeros((60, 7, 7, 4), np.float32)
    for level, level_features in zip((2, 3, 4, 5), features):
        chosen = levels == level
        expected[chosen] = torchvision.ops.roi_align(
            torch.from_numpy(level_features).permute(0, 3, 1, 2),
            _torch_rois(flat[chosen], batch_index[chosen]),
            output_size=7,
            spatial_scale=2.0**-level,
            sampling_ratio=2,
            aligned=True,
        ).permute(0, 2, 3, 1).numpy()
    pooled = multilevel_roi_align(
        [tf.constant(f) for f in features], tf.constant(boxes), min_level=2, output_size=7, canonical_size=56, canonical_level=4
    )
    np.testing.assert_allclose(pooled.numpy().reshape(-1, 7, 7, 4), expected, atol=1e-4)


def test_multilevel_roi_align_has_gradient():
    features = [tf.Variable(tf.random.normal([1, 16 // 2**k, 16 // 2**k, 2])) for k in (0, 1)]
    boxes = tf.constant([[[0.0, 0, 4, 4], [0, 0, 15, 15]]])
    with tf.GradientTape() as tape:
        pooled = multilevel_roi_align(features, boxes, min_level=0, output_size=2, canonical_size=8, canonical_level=1)
        loss = tf.reduce_sum(pooled)
    grads = tape.gradient(loss, features)
    assert all(float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)
