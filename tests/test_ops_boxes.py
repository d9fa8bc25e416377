"""Box ops against torchvision.ops and hand-computed golden values."""

import numpy as np
import pytest
import tensorflow as tf
import torch
import torchvision

from gsfc_tf.ops import anchor_boxes, box_containment, box_iou, clip_boxes, decode_boxes, encode_boxes


def _random_boxes_yxyx(rng, n, size=200.0):
    corner = rng.uniform(0, size * 0.8, (n, 2))
    side = rng.uniform(2, size * 0.3, (n, 2))
    return np.concatenate([corner, corner + side], axis=1).astype(np.float32)


def _to_xyxy(boxes_yxyx):
    return torch.from_numpy(np.ascontiguousarray(boxes_yxyx[:, [1, 0, 3, 2]]))


def test_iou_matches_torchvision():
    rng = np.random.default_rng(0)
    a, b = _random_boxes_yxyx(rng, 50), _random_boxes_yxyx(rng, 30)
    expected = torchvision.ops.box_iou(_to_xyxy(a), _to_xyxy(b)).numpy()
    np.testing.assert_allclose(box_iou(tf.constant(a), tf.constant(b)).numpy(), expected, atol=1e-4)


def test_iou_golden_and_padding():
    iou = box_iou(tf.constant([[0.0, 0, 10, 10]]), tf.constant([[[5.0, 5, 15, 15], [-1, -1, -1, -1], [20, 20, 30, 30]]]))
    np.testing.assert_allclose(iou.numpy(), [[[25 / 175, -1.0, 0.0]]], atol=1e-6)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_encode_decode_match_torchvision(weights):
    rng = np.random.default_rng(1)
    anchors, boxes = _random_boxes_yxyx(rng, 64), _random_boxes_yxyx(rng, 64)
    wy, wx, wh, ww = weights
    coder = torchvision.models.detection._utils.BoxCoder((wx, wy, ww, wh))
    expected = coder.encode_single(_to_xyxy(boxes), _to_xyxy(anchors)).numpy()[:, [1, 0, 3, 2]]
    deltas = encode_boxes(tf.constant(anchors), tf.constant(boxes), weights=weights).numpy()
    np.testing.assert_allclose(deltas, expected, atol=1e-4)

    random_deltas = rng.normal(0, 2, (64, 4)).astype(np.float32)
    expected_boxes = coder.decode_single(torch.from_numpy(random_deltas[:, [1, 0, 3, 2]].copy()), _to_xyxy(anchors))
    decoded = decode_boxes(tf.constant(anchors), tf.constant(random_deltas), weights=weights).numpy()
    np.testing.assert_allclose(decoded, expected_boxes.numpy()[:, [1, 0, 3, 2]], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(decode_boxes(tf.constant(anchors), tf.constant(deltas), weights=weights).numpy(), boxes, atol=1e-3)


def test_decode_clamps_huge_scale_deltas():
    decoded = decode_boxes(tf.constant([[0.0, 0, 10, 10]]), tf.constant([[0.0, 0, 100, 100]]))
    assert np.all(np.isfinite(decoded.numpy()))


def test_clip_boxes():
    clipped = clip_boxes(tf.constant([[-5.0, 3, 250, 199]]), 200).numpy()
    np.testing.assert_array_equal(clipped, [[0, 3, 200, 199]])


def test_containment_golden_and_padding():
    # A 2x2 box inside a 10x10 one: IoU 0.04, containment 1; half of a 10x10 box overlapping: 0.5.
    containment = box_containment(
        tf.constant([[0.0, 0, 10, 10]]), tf.constant([[[4.0, 4, 6, 6], [5, 0, 15, 10], [-1, -1, -1, -1], [20, 20, 30, 30]]])
    )
    np.testing.assert_allclose(containment.numpy(), [[[1.0, 0.5, -1.0, 0.0]]], atol=1e-6)


def test_golden_anchors_on_tiny_image():
    # 16-px image, one level of stride 8 and size 8 with aspect ratios 1 and 4 (w/h):
    # centres at 4 and 12; the 4:1 anchor is 4 px high and 16 px wide.
    (level,) = anchor_boxes(16, sizes=(8,), strides=(8,), aspect_ratios=(1.0, 4.0))
    expected = []
    for cy in (4, 12):
        for cx in (4, 12):
            expected += [[cy - 4, cx - 4, cy + 4, cx + 4], [cy - 2, cx - 8, cy + 2, cx + 8]]
    np.testing.assert_allclose(level, expected, atol=1e-5)


def test_anchor_levels_and_counts():
    levels = anchor_boxes(64, sizes=(8, 16), strides=(4, 8), scales=(1.0, 2.0))
    assert [lvl.shape for lvl in levels] == [(16 * 16 * 2, 4), (8 * 8 * 2, 4)]
    np.testing.assert_allclose(levels[1][1], [4 - 16, 4 - 16, 4 + 16, 4 + 16])
