"""Matching, sampling and losses: counting tests and the no-object edge case."""

import numpy as np
import tensorflow as tf

from gsfc_tf.ops import box_iou, match_boxes, roi_losses, rpn_losses, sample_balanced


def test_match_boxes_thresholds_low_quality_and_padding():
    anchors = tf.constant([[0.0, 0, 10, 10], [0, 0, 10, 14], [0, 0, 20, 20], [50, 50, 60, 60], [0, 0, 10, 10]])
    gt = tf.constant([[[0.0, 0, 10, 10], [-1, -1, -1, -1]]])
    iou = box_iou(anchors, gt)
    matched, labels = match_boxes(iou, fg_threshold=0.7, bg_threshold=0.3, allow_low_quality=False)
    # IoUs with gt 0: 1, 10/14, 0.25, 0, 1 -> fg, fg, bg, bg, fg; padded gt never wins.
    np.testing.assert_array_equal(labels.numpy(), [[1, 1, 0, 0, 1]])
    np.testing.assert_array_equal(matched.numpy(), [[0, 0, 0, 0, 0]])
    _, labels = match_boxes(iou, fg_threshold=0.9, bg_threshold=0.3, allow_low_quality=False)
    np.testing.assert_array_equal(labels.numpy(), [[1, -1, 0, 0, 1]])


def test_low_quality_matches_keep_all_ties_and_skip_padding():
    anchors = tf.constant([[0.0, 0, 20, 20], [0, 0, 20, 20], [100, 100, 120, 120]])
    gt = tf.constant([[[0.0, 0, 10, 10], [-1, -1, -1, -1]]])
    _, labels = match_boxes(box_iou(anchors, gt), fg_threshold=0.7, bg_threshold=0.3, allow_low_quality=True)
    np.testing.assert_array_equal(labels.numpy(), [[1, 1, 0]])
    _, labels = match_boxes(box_iou(anchors, -tf.ones([1, 2, 4])), fg_threshold=0.7, bg_threshold=0.3, allow_low_quality=True)
    np.testing.assert_array_equal(labels.numpy(), [[0, 0, 0]])


def test_sampler_counts():
    rng = np.random.default_rng(0)
    labels = np.full((3, 1000), 0, np.int32)
    labels[0, rng.choice(1000, 400, replace=False)] = 1  # plenty of positives: capped at 25%
    labels[1, :10] = 1  # few positives: negatives fill the rest
    labels[2, :] = -1  # only 20 negatives, everything else ignored
    labels[2, 500:520] = 0
    noise = tf.random.stateless_uniform([3, 1000], seed=[1, 2])
    indices, valid = sample_balanced(tf.constant(labels), noise, num_samples=128, positive_fraction=0.25)
    indices, valid = indices.numpy(), valid.numpy()
    picked = [labels[b, indices[b][valid[b]]] for b in range(3)]
    assert [(p == 1).sum() for p in picked] == [32, 10, 0]
    assert [(p == 0).sum() for p in picked] == [96, 118, 20]
    assert all(len(set(indices[b][valid[b]])) == valid[b].sum() for b in range(3)), "no row sampled twice"
    # Positives come first, and a different seed picks a different subset.
    assert np.all(picked[0][:32] == 1)
    other, _ = sample_balanced(tf.constant(labels), tf.random.stateless_uniform([3, 1000], seed=[3, 4]), num_samples=128, positive_fraction=0.25)
    assert set(other.numpy()[0]) != set(indices[0])


def test_no_objects_gives_zero_box_losses():
    rng = np.random.default_rng(0)
    pred = tf.constant(rng.normal(size=(2, 50, 4)), tf.float32)
    weights = tf.constant((rng.uniform(size=(2, 50)) < 0.5).astype(np.float32))
    rpn = rpn_losses(tf.constant(rng.normal(size=(2, 50)), tf.float32), pred, tf.zeros([2, 50]), tf.zeros([2, 50, 4]), weights)
    roi = roi_losses(
        tf.constant(rng.normal(size=(2, 8, 3)), tf.float32),
        tf.constant(rng.normal(size=(2, 8, 2, 4)), tf.float32),
        tf.zeros([2, 8], tf.int32),
        tf.zeros([2, 8, 4]),
        tf.ones([2, 8], tf.bool),
    )
    assert float(rpn["rpn_box"]) == 0.0 and float(roi["roi_box"]) == 0.0
    assert np.isfinite(float(rpn["rpn_objectness"])) and float(roi["roi_class"]) > 0


def test_roi_box_loss_uses_the_ground_truth_class_slot():
    deltas = np.zeros((1, 1, 2, 4), np.float32)
    deltas[0, 0, 1] = 1.0  # class-2 slot is off by 1 in every coordinate; class-1 slot is exact
    logits = tf.zeros([1, 1, 3])
    loss_class1 = roi_losses(logits, tf.constant(deltas), tf.constant([[1]]), tf.zeros([1, 1, 4]), tf.ones([1, 1], tf.bool))
    loss_class2 = roi_losses(logits, tf.constant(deltas), tf.constant([[2]]), tf.zeros([1, 1, 4]), tf.ones([1, 1], tf.bool))
    assert float(loss_class1["roi_box"]) == 0.0
    np.testing.assert_allclose(float(loss_class2["roi_box"]), 4 * (1 - 0.5 / 9), rtol=1e-6)
    np.testing.assert_allclose(float(loss_class1["roi_class"]), np.log(3), rtol=1e-6)
