"""Duplicate suppression, box voting, shared box sides and weighted box fusion against plain numpy references and torchvision."""

import numpy as np
import pytest
import tensorflow as tf
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from gsfc_tf.ops.suppression import keep_scores_at_least, share_box_sides, suppress_duplicates, vote_boxes, weighted_box_fusion


def _random_boxes_yxyx(rng, n, size=100.0, max_side=0.4):
    corner = rng.uniform(0, size * 0.8, (n, 2))
    side = rng.uniform(2, size * max_side, (n, 2))
    return np.concatenate([corner, corner + side], axis=1).astype(np.float32)


def _padded(boxes, scores, classes, num_slots):
    """One image's detections (any order) as a padded batch of one, sorted by descending score."""
    order = np.argsort(-scores, kind="stable")
    pad = num_slots - len(scores)
    return {
        "boxes": tf.constant(np.pad(boxes[order], [[0, pad], [0, 0]])[None], tf.float32),
        "scores": tf.constant(np.pad(scores[order], [0, pad])[None], tf.float32),
        "classes": tf.constant(np.pad(classes[order], [0, pad])[None], tf.int32),
        "num_detections": tf.constant([len(scores)], tf.int32),
    }


def _overlaps(a, b):
    """(IoU, intersection / smaller area) of two yxyx boxes, in numpy."""
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    area_a, area_b = (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter), inter / min(area_a, area_b)


def _reference_suppress(boxes, scores, classes, *, iou_threshold, containment_threshold, same_class_only):
    """Kept indices, by plain greedy suppression in descending score order."""
    kept = []
    for i in np.argsort(-scores, kind="stable"):
        duplicate = False
        for j in kept:
            if same_class_only and classes[i] != classes[j]:
                continue
            iou, containment = _overlaps(boxes[i], boxes[j])
            duplicate |= iou_threshold is not None and iou > iou_threshold
            duplicate |= containment_threshold is not None and containment >= containment_threshold
        if not duplicate:
            kept.append(i)
    return kept


def _check_padded_layout(out, num_slots):
    num = int(out["num_detections"][0])
    scores = out["scores"][0].numpy()
    assert out["boxes"].shape == (1, num_slots, 4) and scores.shape == (num_slots,)
    assert np.all(np.diff(scores[:num]) <= 0), "descending scores"
    assert not out["boxes"][0, num:].numpy().any() and not scores[num:].any() and not out["classes"][0, num:].numpy().any()


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    count=st.integers(0, 24),
    iou_threshold=st.sampled_from([None, 0.2, 0.5]),
    containment_threshold=st.sampled_from([None, 0.6, 0.9]),
    same_class_only=st.booleans(),
)
def test_suppression_matches_numpy_greedy(seed, count, iou_threshold, containment_threshold, same_class_only):
    rng = np.random.default_rng(seed)
    boxes = _random_boxes_yxyx(rng, count)
    scores = rng.permutation(count).astype(np.float32) / max(count, 1) + 0.01  # distinct: one greedy order
    classes = rng.integers(0, 2, count)
    options = dict(iou_threshold=iou_threshold, containment_threshold=containment_threshold, same_class_only=same_class_only)
    out = suppress_duplicates(_padded(boxes, scores, classes, 30), **options)
    kept = _reference_suppress(boxes, scores, classes, **options)
    num = int(out["num_detections"][0])
    assert num == len(kept)
    np.testing.assert_array_equal(out["boxes"][0, :num].numpy(), boxes[kept])
    np.testing.assert_array_equal(out["scores"][0, :num].numpy(), scores[kept])
    np.testing.assert_array_equal(out["classes"][0, :num].numpy(), classes[kept])
    _check_padded_layout(out, 30)


@pytest.mark.parametrize("same_class_only", [False, True])
def test_suppression_matches_torchvision_nms(same_class_only):
    rng = np.random.default_rng(2)
    boxes = _random_boxes_yxyx(rng, 300)
    scores = rng.permutation(300).astype(np.float32) / 300 + 0.001
    classes = rng.integers(0, 2, 300)
    xyxy = torch.from_numpy(np.ascontiguousarray(boxes[:, [1, 0, 3, 2]]))
    if same_class_only:
        keep = torchvision.ops.batched_nms(xyxy, torch.from_numpy(scores), torch.from_numpy(classes), 0.5).numpy()
    else:
        keep = torchvision.ops.nms(xyxy, torch.from_numpy(scores), 0.5).numpy()
    out = suppress_duplicates(_padded(boxes, scores, classes, 300), iou_threshold=0.5, same_class_only=same_class_only)
    num = int(out["num_detections"][0])
    np.testing.assert_array_equal(out["scores"][0, :num].numpy(), scores[keep])


def test_hand_made_cases():
    clump = [20.0, 20, 30, 30]
    detections = {
        "boxes": tf.constant(
            [
                [clump, [20.5, 20, 30.5, 30], [50, 50, 80, 80], [60, 60, 66, 66], [0, 0, 0, 0]],
                [[0, 0, 0, 0]] * 5,
            ]
        ),
        "scores": tf.constant([[0.9, 0.8, 0.7, 0.6, 0.0], [0.0] * 5]),
        # One clump seen as both classes; a small box nested in a big one; an empty image.
        "classes": tf.constant([[0, 1, 0, 0, 0], [0] * 5]),
        "num_detections": tf.constant([4, 0]),
    }
    agnostic = suppress_duplicates(detections, iou_threshold=0.2)
    assert agnostic["num_detections"].numpy().tolist() == [3, 0], "the second class on one clump goes; the nested box stays"
    np.testing.assert_array_equal(agnostic["boxes"][0, :3].numpy(), [clump, [50, 50, 80, 80], [60, 60, 66, 66]])
    both = suppress_duplicates(detections, iou_threshold=0.2, containment_threshold=0.9)
    assert both["num_detections"].numpy().tolist() == [2, 0], "the nested box (IoU 0.04, containment 1) goes"
    np.testing.assert_array_equal(both["classes"][0].numpy(), [0, 0, 0, 0, 0])
    loose = suppress_duplicates(detections, iou_threshold=0.95)
    assert loose["num_detections"].numpy().tolist() == [4, 0], "IoU 0.905 is not above 0.95"
    np.testing.assert_array_equal(loose["boxes"].numpy(), detections["boxes"].numpy())


@pytest.mark.parametrize("bad", [0.0, 1.5])
def test_suppression_rejects_bad_thresholds(bad):
    detections = _padded(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int), 3)
    with pytest.raises(ValueError, match=r"containment_threshold must be in \(0, 1\]"):
        suppress_duplicates(detections, containment_threshold=bad)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), objects=st.integers(0, 5), iou_threshold=st.sampled_from([0.3, 0.5, 0.7]), score_power=st.sampled_from([1.0, 8.0]))
def test_box_voting_matches_numpy_reference(seed, objects, iou_threshold, score_power):
    # Each object proposed several times with jitter; the kept boxes are the suppression's.
    rng = np.random.default_rng(seed)
    truth = _random_boxes_yxyx(rng, objects, max_side=0.2)
    candidates = np.concatenate([truth + rng.normal(0, 1.0, truth.shape).astype(np.float32) for _ in range(6)]).reshape(-1, 4)
    candidates = np.concatenate([np.minimum(candidates[:, :2], candidates[:, 2:]), np.maximum(candidates[:, :2], candidates[:, 2:])], axis=1)
    scores = rng.uniform(0.05, 1.0, len(candidates)).astype(np.float32)
    kept = suppress_duplicates(_padded(candidates, scores, np.zeros(len(scores), int), 32), iou_threshold=0.3)
    out = vote_boxes(kept, tf.constant(candidates[None]), tf.constant(scores[None]), iou_threshold=iou_threshold, score_power=score_power)
    num = int(kept["num_detections"][0])
    for box, voted in zip(kept["boxes"][0, :num].numpy(), out["boxes"][0, :num].numpy()):
        weights = np.array([score**score_power if _overlaps(box, c)[0] >= iou_threshold else 0.0 for c, score in zip(candidates, scores)])
        np.testing.assert_allclose(voted, weights @ candidates / weights.sum(), rtol=1e-4, atol=1e-3)
    for key in ("scores", "classes", "num_detections"):
        np.testing.assert_array_equal(out[key].numpy(), kept[key].numpy())
    _check_padded_layout(out, 32)


def test_box_voting_hand_made_case():
    # The kept box (score 0.8) and a neighbour (0.4) at IoU 0.67 vote; a far box (0.9) and a padded
    # candidate (score 0) do not. Weights 0.8 ** 2 and 0.4 ** 2: 0.8 and 0.2 of the mean.
    detections = _padded(np.array([[10, 10, 20, 20]], np.float32), np.array([0.8], np.float32), np.array([1]), 2)
    candidates = tf.constant([[[10.0, 10, 20, 20], [12, 10, 22, 20], [50, 50, 60, 60], [11, 10, 21, 20]]])
    out = vote_boxes(detections, candidates, tf.constant([[0.8, 0.4, 0.9, 0.0]]), iou_threshold=0.5, score_power=2.0)
    np.testing.assert_allclose(out["boxes"][0].numpy(), [[10.4, 10, 20.4, 20], [0, 0, 0, 0]], atol=1e-5)
    with pytest.raises(ValueError, match="iou_threshold"):
        vote_boxes(detections, candidates, tf.zeros([1, 4]), iou_threshold=0.0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), count=st.integers(0, 6), fraction=st.sampled_from([0.0, 0.5, 1.0]), score_power=st.sampled_from([1.0, 8.0]))
def test_shared_sides_match_numpy_reference(seed, count, fraction, score_power):
    rng = np.random.default_rng(seed)
    boxes = _random_boxes_yxyx(rng, count)
    scores = rng.uniform(0.05, 1.0, count).astype(np.float32)
    detections = _padded(boxes, scores, np.zeros(count, int), 8)
    out = share_box_sides(detections, fraction=fraction, image_size=1000, score_power=score_power)
    kept_boxes, kept_scores = detections["boxes"][0, :count].numpy(), detections["scores"][0, :count].numpy()
    if count:
        sizes = kept_boxes[:, 2:] - kept_boxes[:, :2]
        log_sides = np.log(sizes).sum(axis=1) / 2
        mean = np.average(log_sides, weights=kept_scores.astype(np.float64) ** score_power)
        half = sizes / 2 * np.exp(fraction * (mean - log_sides))[:, None]
        centres = (kept_boxes[:, :2] + kept_boxes[:, 2:]) / 2
        expected = np.clip(np.concatenate([centres - half, centres + half], 1), 0, 1000)
        np.testing.assert_allclose(out["boxes"][0, :count].numpy(), expected, rtol=1e-4, atol=1e-3)
    for key in ("scores", "classes", "num_detections"):
        np.testing.assert_array_equal(out[key].numpy(), detections[key].numpy())
    _check_padded_layout(out, 8)


def test_shared_sides_hand_made_case():
    # Sides 10 and 40 (geometric mean 20) at equal scores: halfway in log side gives 10 * 2 ** 0.5
    # and 40 / 2 ** 0.5 about the same centres, and all the way gives both 20. A 2:1 box keeps its
    # shape. With scores 0.9 and 0.45 at power 8, the mean is almost the better box's side. Boxes
    # end clipped to the image.
    detections = _padded(np.array([[10, 10, 20, 20], [50, 50, 90, 90]], np.float32), np.array([0.9, 0.9], np.float32), np.zeros(2, int), 3)
    half = share_box_sides(detections, fraction=0.5, image_size=100)["boxes"][0].numpy()
    np.testing.assert_allclose(half[:2, 2:] - half[:2, :2], [[10 * 2**0.5] * 2, [40 / 2**0.5] * 2], rtol=1e-5)
    np.testing.assert_allclose((half[:2, :2] + half[:2, 2:]) / 2, [[15, 15], [70, 70]], rtol=1e-5)
    np.testing.assert_array_equal(half[2], [0, 0, 0, 0])
    whole = share_box_sides(detections, fraction=1.0, image_size=100)["boxes"][0].numpy()
    np.testing.assert_allclose(whole[:2, 2:] - whole[:2, :2], [[20, 20], [20, 20]], rtol=1e-5)
    clipped = share_box_sides(detections, fraction=1.0, image_size=75)["boxes"][0].numpy()
    np.testing.assert_allclose(clipped[1], [60, 60, 75, 75], rtol=1e-5)
    oblong = _padded(np.array([[10, 10, 20, 30], [50, 50, 90, 90]], np.float32), np.array([0.9, 0.45], np.float32), np.zeros(2, int), 2)
    shared = share_box_sides(oblong, fraction=1.0, image_size=100)["boxes"][0].numpy()
    sizes = shared[:, 2:] - shared[:, :2]
    np.testing.assert_allclose(sizes[0] / sizes[0, 0], [1, 2], rtol=1e-5)
    np.testing.assert_allclose(np.sqrt(sizes.prod(axis=1)), [200**0.5] * 2, rtol=2e-2)
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\]"):
        share_box_sides(detections, fraction=1.5, image_size=100)


def _reference_wbf(boxes, scores, classes, *, iou_threshold, num_sources):
    """Weighted box fusion as the paper's Algorithm 1, one class-agnostic list of clusters."""
    clusters = []  # [member indices]
    for i in np.argsort(-scores, kind="stable"):
        fused = [np.average(boxes[members], axis=0, weights=scores[members]) for members in clusters]
        ious = [_overlaps(boxes[i], f)[0] for f in fused]
        if ious and max(ious) > iou_threshold:
            clusters[int(np.argmax(ious))].append(i)
        else:
            clusters.append([i])
    result = [
        (
            np.average(boxes[m], axis=0, weights=scores[m]),
            scores[m].mean() * min(len(m), num_sources) / num_sources,
            classes[m[0]],
        )
        for m in clusters
    ]
    return sorted(result, key=lambda r: -r[1])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), objects=st.integers(0, 5), num_sources=st.sampled_from([1, 3, 8]))
def test_wbf_matches_numpy_reference(seed, objects, num_sources):
    # Each object seen by every source with jitter: clusters form, as in TTA.
    rng = np.random.default_rng(seed)
    truth = _random_boxes_yxyx(rng, objects, max_side=0.2)
    boxes = np.concatenate([truth + rng.normal(0, 1.0, truth.shape).astype(np.float32) for _ in range(num_sources)]).reshape(-1, 4)
    boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1)
    scores = rng.uniform(0.05, 1.0, len(boxes)).astype(np.float32)
    classes = rng.integers(0, 2, len(boxes))
    out = weighted_box_fusion(_padded(boxes, scores, classes, 48), iou_threshold=0.55, num_sources=num_sources)
    expected = _reference_wbf(boxes, scores, classes, iou_threshold=0.55, num_sources=num_sources)
    num = int(out["num_detections"][0])
    assert num == len(expected)
    np.testing.assert_allclose(out["scores"][0, :num].numpy(), [e[1] for e in expected], rtol=1e-5)
    np.testing.assert_allclose(out["boxes"][0, :num].numpy(), np.reshape([e[0] for e in expected], (-1, 4)), atol=1e-3)
    np.testing.assert_array_equal(out["classes"][0, :num].numpy(), [e[2] for e in expected])
    _check_padded_layout(out, 48)


def test_wbf_hand_made_cluster():
    boxes = np.array([[10, 10, 20, 20], [12, 10, 22, 20], [60, 60, 70, 70]], np.float32)
    scores = np.array([0.6, 0.2, 0.4], np.float32)
    out = weighted_box_fusion(_padded(boxes, scores, np.array([1, 0, 0]), 4), num_sources=8)
    assert int(out["num_detections"][0]) == 2
    # Two of eight sources agree: score (0.6 + 0.2) / 8; box 0.75 / 0.25 of the two; class of the best member.
    np.testing.assert_allclose(out["scores"][0].numpy(), [0.1, 0.05, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(out["boxes"][0, 0].numpy(), [10.5, 10, 20.5, 20], atol=1e-5)
    np.testing.assert_array_equal(out["classes"][0].numpy(), [1, 0, 0, 0])


def test_keep_scores_at_least_cuts_each_image_and_pads_with_zeros():
    detections = {
        "boxes": tf.constant([[[1.0, 1, 5, 5], [2, 2, 6, 6], [3, 3, 7, 7]], [[4.0, 4, 8, 8], [0, 0, 0, 0], [0, 0, 0, 0]]]),
        "scores": tf.constant([[0.9, 0.5, 0.4], [0.3, 0.0, 0.0]]),
        "classes": tf.constant([[1, 0, 1], [0, 0, 0]]),
        "num_detections": tf.constant([3, 1]),
    }
    kept = keep_scores_at_least(detections, 0.5)
    assert kept["num_detections"].numpy().tolist() == [2, 0], "at or above: 0.5 stays"
    np.testing.assert_array_equal(kept["boxes"][0].numpy(), [[1, 1, 5, 5], [2, 2, 6, 6], [0, 0, 0, 0]])
    np.testing.assert_array_equal(kept["scores"].numpy(), np.float32([[0.9, 0.5, 0.0], [0.0, 0.0, 0.0]]))
    np.testing.assert_array_equal(kept["classes"].numpy(), [[1, 0, 0], [0, 0, 0]])
    unchanged = keep_scores_at_least(detections, 0.0)
    for key in detections:
        np.testing.assert_array_equal(unchanged[key].numpy(), detections[key].numpy())
