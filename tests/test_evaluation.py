"""Tests for gsfc_tf.evaluation: hand-computed cases, invariants, and pycocotools as reference."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsfc_tf import conventions
from gsfc_tf.conventions import CENTRE_MATCH_DISTANCE
from gsfc_tf.evaluation import (
    ImageBoxes,
    coco_average_precision,
    completeness_by_bins,
    evaluate_detections,
    from_padded_batch,
    greedy_match,
    metrics_report,
    write_metrics_json,
)


def square(cy, cx, side):
    return [cy - side / 2, cx - side / 2, cy + side / 2, cx + side / 2]


def truth(*boxes, labels=None):
    return ImageBoxes(np.array(boxes, float).reshape(-1, 4), np.zeros(len(boxes)) if labels is None else labels)


def pred(boxes, scores, labels=None):
    boxes = np.array(boxes, float).reshape(-1, 4)
    return ImageBoxes(boxes, np.zeros(len(boxes)) if labels is None else labels, scores)


def random_case(rng, n_images, *, max_true=6, max_false=4, jitter=2.0):
    """Truths of realistic sizes; predictions jittered from them plus false positives."""
    truths, predictions = [], []
    for _ in range(n_images):
        n = rng.integers(0, max_true + 1)
        boxes = np.array([square(*rng.uniform(20, 180, 2), rng.uniform(4, 48)) for _ in range(n)]).reshape(-1, 4)
        truths.append(ImageBoxes(boxes, rng.integers(0, 2, n)))
        kept = boxes[rng.random(n) < 0.8]
        found = kept + rng.normal(0, jitter, kept.shape)
        found[:, 2:] = np.maximum(found[:, 2:], found[:, :2] + 1)
        n_false = rng.integers(0, max_false + 1)
        false = np.array([square(*rng.uniform(10, 190, 2), rng.uniform(4, 30)) for _ in range(n_false)])
        all_boxes = np.concatenate([found, false.reshape(-1, 4)])
        predictions.append(ImageBoxes(all_boxes, rng.integers(0, 2, len(all_boxes)), rng.random(len(all_boxes))))
    return truths, predictions


def test_perfect_predictions_give_completeness_and_purity_one_and_ap_one():
    truths = [truth(square(50, 50, 16), square(120, 90, 10)), truth(square(100, 100, 30), labels=[1])]
    predictions = [pred(t.boxes_yxyx, [0.9] * len(t), t.labels) for t in truths]
    metrics = metrics_report(truths, predictions)
    assert metrics["completeness"] == 1.0 and metrics["purity"] == 1.0
    assert metrics["operating_point"]["meets_target"]
    assert metrics["per_class"]["clump"]["completeness"] == metrics["per_class"]["odd_clump"]["completeness"] == 1.0
    assert metrics["coco"]["AP50"] == pytest.approx(1.0) and metrics["coco"]["AP"] == pytest.approx(1.0)


def test_no_predictions_give_completeness_zero_and_purity_one():
    truths = [truth(square(50, 50, 16)), truth(square(80, 80, 20))]
    predictions = [pred(np.zeros((0, 4)), [])] * 2
    metrics = metrics_report(truths, predictions)
    assert metrics["completeness"] == 0.0
    # Documented convention: with no predictions, purity is 1.0 (no false claim).
    assert metrics["purity"] == 1.0 and set(metrics["curves"]["purity"]) == {1.0}
    assert not metrics["operating_point"]["meets_target"]
    assert metrics["coco"]["AP50"] == 0.0 and metrics["coco"]["class_agnostic"]["recall50"] == 0.0


def test_no_truths_give_undefined_completeness_written_as_null(tmp_path):
    metrics = evaluate_detections([truth()], [pred([square(50, 50, 10)], [0.5])])
    assert math.isnan(metrics["curves"]["completeness"][0]) and metrics["curves"]["purity"][0] == 0.0
    assert metrics["operating_point"]["threshold"] is None and metrics["completeness"] is None
    loaded = json.loads(write_metrics_json(metrics, tmp_path / "m.json").read_text())
    assert loaded["curves"]["completeness"][0] is None and loaded["curves"]["purity"][0] == 0.0


def test_duplicates_lower_purity_not_completeness():
    boxes = [square(50, 50, 16), square(120, 120, 12)]
    metrics = evaluate_detections([truth(*boxes)], [pred(boxes + boxes, [0.9, 0.8, 0.7, 0.6])])
    assert metrics["curves"]["completeness"][0] == 1.0
    assert metrics["curves"]["purity"][0] == 0.5
    assert metrics["operating_point"]["threshold"] == 0.71  # drops both duplicates, keeps both hits
    assert metrics["purity"] == 1.0


def test_hand_computed_iou_thresholds():
    # Truth 10x10; a 10x20 box holding it has IoU 0.5; one shifted by 5 px has IoU 50/150.
    t = truth([0, 0, 10, 10])
    exact_half, third = [0, 0, 10, 20], [0, 5, 10, 15]
    assert greedy_match(t.boxes_yxyx, [exact_half], [1.0]).tolist() == [0]
    assert greedy_match(t.boxes_yxyx, [third], [1.0]).tolist() == [-1]
    assert greedy_match(t.boxes_yxyx, [third], [1.0], iou_threshold=0.3).tolist() == [0]
    # Centre distance 5 px: matched by the distance test, or by either test when both are set.
    assert greedy_match(t.boxes_yxyx, [third], [1.0], iou_threshold=None, centre_distance=5).tolist() == [0]
    assert greedy_match(t.boxes_yxyx, [third], [1.0], iou_threshold=None, centre_distance=4.9).tolist() == [-1]
    assert greedy_match(t.boxes_yxyx, [third], [1.0], iou_threshold=0.9, centre_distance=5).tolist() == [0]


def test_greedy_order_follows_score_and_prefers_the_best_iou():
    # Truth A = [0, 0, 10, 10]; prediction P = [0, 1, 10, 11] overlaps A with IoU 0.82 and
    # Q = [0, 2, 10, 12] with IoU 0.67: the higher-scored one takes A, even with less overlap.
    a = truth([0, 0, 10, 10]).boxes_yxyx
    p_and_q = [[0, 1, 10, 11], [0, 2, 10, 12]]
    assert greedy_match(a, p_and_q, [0.1, 0.9]).tolist() == [-1, 0]
    assert greedy_match(a, p_and_q, [0.9, 0.1]).tolist() == [0, -1]
    # P is eligible for B = [0, 3, 10, 13] (IoU 0.67) and A (0.82): it takes A, whatever the index.
    assert greedy_match(truth([0, 3, 10, 13], [0, 0, 10, 10]).boxes_yxyx, p_and_q[:1], [0.5]).tolist() == [1]


def test_per_class_matching_needs_agreeing_labels():
    truths = [truth(square(50, 50, 16), square(100, 100, 16), labels=[0, 1])]
    predictions = [pred([square(50, 50, 16), square(100, 100, 16)], [0.9, 0.8], labels=[0, 0])]
    metrics = evaluate_detections(truths, predictions)
    assert metrics["completeness"] == 1.0 and metrics["purity"] == 1.0
    clump, odd = metrics["per_class"]["clump"], metrics["per_class"]["odd_clump"]
    assert (clump["completeness"], clump["purity"], clump["n_predicted"]) == (1.0, 0.5, 2)
    assert (odd["completeness"], odd["purity"], odd["n_true"]) == (0.0, 1.0, 1)


def test_operating_point_and_f1_best_on_a_hand_made_curve():
    # Five truths found by scores 0.9..0.5, and false positives scored 0.95 and 0.3, 0.2.
    boxes = [square(30 + 30 * i, 100, 12) for i in range(5)]
    false = [square(20, 20, 10), square(180, 180, 10), square(20, 180, 10)]
    metrics = evaluate_detections(
        [truth(*boxes)], [pred(boxes + false, [0.9, 0.8, 0.7, 0.6, 0.5, 0.95, 0.3, 0.2])],
        score_thresholds=[0.0, 0.25, 0.4, 0.65, 0.85, 0.92],
    )
    np.testing.assert_allclose(metrics["curves"]["completeness"], [1, 1, 1, 0.6, 0.2, 0])
    np.testing.assert_allclose(metrics["curves"]["purity"], [5 / 8, 5 / 7, 5 / 6, 3 / 4, 1 / 2, 0])
    # min(C, P) is largest (5/6) at 0.4, which is also the F1-best threshold.
    assert metrics["operating_point"]["threshold"] == 0.4 and metrics["operating_point"]["meets_target"]
    assert metrics["f1_best"]["threshold"] == 0.4
    assert metrics["f1_best"]["f1"] == pytest.approx(2 * (5 / 6) / (1 + 5 / 6))


def test_completeness_by_size_bins_box_sides():
    sides = [5, 9, 9, 18, 40]
    boxes = [square(30 + 30 * i, 100, s) for i, s in enumerate(sides)]
    found = [boxes[0], boxes[1], boxes[4]]
    metrics = evaluate_detections([truth(*boxes)], [pred(found, [0.9] * 3)], size_bin_edges=[8, 16, 32])
    by_size = metrics["by_size"]
    assert by_size["labels"] == ["<8", "8–16", "16–32", "≥32"]
    assert by_size["n_true"] == [1, 2, 1, 1] and by_size["n_matched"] == [1, 1, 0, 1]
    assert by_size["completeness"] == [1.0, 0.5, 0.0, 1.0]


def test_from_padded_batch_splits_images_and_offsets_labels():
    boxes = np.zeros((2, 3, 4), np.float32)
    boxes[:, :, 2:] = 10
    classes = np.array([[1, 2, 0], [2, 0, 0]])
    scores = np.array([[0.9, 0.8, 0.0], [0.7, 0.0, 0.0]])
    images = from_padded_batch(
        boxes=boxes, scores=scores, classes=conventions.from_model_class(classes), num_detections=[2, 1]
    )
    assert [im.labels.tolist() for im in images] == [[0, 1], [1]]
    assert images[0].scores.tolist() == [0.9, 0.8]
    # Padded truths: rows with label -1 are dropped.
    truths = from_padded_batch(boxes, np.array([[0, 1, -1], [-1, -1, -1]]))
    assert [len(t) for t in truths] == [2, 0] and truths[0].scores is None


def test_guard_clauses_show_shapes():
    with pytest.raises(ValueError, match=r"\[K, 4\], got shape \(3, 3\)"):
        ImageBoxes(np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="neither"):
        greedy_match(np.zeros((1, 4)), np.zeros((1, 4)), [1.0], iou_threshold=None)
    with pytest.raises(ValueError, match="same images, got 1 and 2"):
        evaluate_detections([truth()], [pred([], [])] * 2)
    with pytest.raises(ValueError, match="needs scores"):
        evaluate_detections([truth()], [truth()])
    with pytest.raises(ValueError, match="labels must be in"):
        evaluate_detections([truth([0, 0, 1, 1], labels=[2])], [pred([], [])])


@st.composite
def cases(draw, max_images=3, max_boxes=6):
    """Integer-grid boxes (so exact IoU ties and duplicates occur) with random scores."""

    def boxes(n):
        corner = st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(1, 12), st.integers(1, 12))
        corners = draw(st.lists(corner, min_size=n, max_size=n))
        return np.array([[y, x, y + h, x + w] for y, x, h, w in corners], float).reshape(-1, 4)

    truths, predictions = [], []
    for _ in range(draw(st.integers(1, max_images))):
        n, m = draw(st.integers(0, max_boxes)), draw(st.integers(0, max_boxes))
        truths.append(ImageBoxes(boxes(n), draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))))
        scores = draw(st.lists(st.sampled_from([0.1, 0.25, 0.5, 0.5, 0.75, 0.9]), min_size=m, max_size=m))
        predictions.append(ImageBoxes(boxes(m), draw(st.lists(st.integers(0, 1), min_size=m, max_size=m)), scores))
    return truths, predictions


@settings(max_examples=60, deadline=None)
@given(cases(), st.sampled_from([0.5, 0.3]), st.sampled_from([None, 4.0]))
def test_curves_equal_rematching_above_each_threshold(case, iou_threshold, centre_distance):
    """The one-matching curve equals re-matching only the predictions scoring >= t."""
    truths, predictions = case
    thresholds = [0.0, 0.2, 0.5, 0.6, 0.9, 1.0]
    metrics = evaluate_detections(
        truths, predictions, iou_threshold=iou_threshold, centre_distance=centre_distance, score_thresholds=thresholds
    )
    for i, t in enumerate(thresholds):
        n_matched = n_predicted = 0
        for tr, pr in zip(truths, predictions):
            kept = pr.select(pr.scores >= t)
            criterion = {"iou_threshold": iou_threshold, "centre_distance": centre_distance}
            matched = greedy_match(tr.boxes_yxyx, kept.boxes_yxyx, kept.scores, **criterion)
            assert len(set(matched[matched >= 0].tolist())) == np.count_nonzero(matched >= 0)  # one-to-one
            n_matched += np.count_nonzero(matched >= 0)
            n_predicted += len(kept)
        assert metrics["curves"]["n_matched"][i] == n_matched
        assert metrics["curves"]["n_predicted"][i] == n_predicted


@settings(max_examples=60, deadline=None)
@given(cases(), st.randoms(use_true_random=False))
def test_invariants_order_independence_monotonicity_and_bounds(case, random):
    truths, predictions = case
    metrics = evaluate_detections(truths, predictions)
    completeness = np.array(metrics["curves"]["completeness"], float)
    purity = np.array(metrics["curves"]["purity"], float)
    if metrics["n_true"]:
        assert np.all(np.diff(completeness) <= 0) and np.all((0 <= completeness) & (completeness <= 1))
    assert np.all(np.diff(metrics["curves"]["n_predicted"]) <= 0)
    assert np.all((0 <= purity) & (purity <= 1))
    # Reordering the images, and the predictions within an image, changes nothing as long as
    # equal scores keep their relative order (the documented tie rule).
    order = list(range(len(truths)))
    random.shuffle(order)
    by_score = [predictions[i].select(np.argsort(-predictions[i].scores, kind="stable")) for i in order]
    reordered = evaluate_detections([truths[i] for i in order], by_score)
    np.testing.assert_equal(reordered["curves"], metrics["curves"])
    np.testing.assert_equal(reordered["per_class"], metrics["per_class"])


def test_completeness_by_snr_hand_computed_with_a_row_per_class():
    # Five truths, SNRs 2, 4, 4, 12 and one unknown; the odd one (SNR 12) and the SNR-2 one are
    # found, the latter by a box of the other class (class-agnostic), one SNR-4 one only below
    # the threshold.
    boxes = [square(30 + 30 * i, 100, 16) for i in range(5)]
    truths = [truth(*boxes[:3], labels=[0, 0, 0]), truth(*boxes[3:], labels=[1, 0])]
    predictions = [pred([boxes[0], boxes[1]], [0.9, 0.3], labels=[1, 0]), pred([boxes[3]], [0.8], labels=[1])]
    snr = [np.array([2.0, 4.0, 4.0]), np.array([12.0, np.nan])]
    by_snr = completeness_by_bins(truths, predictions, snr, [3, 5, 10], score_threshold=0.5)
    assert by_snr["labels"] == ["<3", "3–5", "5–10", "≥10"] and by_snr["threshold"] == 0.5
    assert by_snr["n_true"] == [1, 2, 0, 1] and by_snr["n_matched"] == [1, 0, 0, 1] and by_snr["n_unknown"] == 1
    np.testing.assert_equal(by_snr["completeness"], [1.0, 0.0, np.nan, 1.0])
    clump, odd = by_snr["per_class"]["clump"], by_snr["per_class"]["odd_clump"]
    assert clump["n_true"] == [1, 2, 0, 0] and clump["n_matched"] == [1, 0, 0, 0] and clump["n_unknown"] == 1
    assert odd["n_true"] == [0, 0, 0, 1] and odd["n_matched"] == [0, 0, 0, 1] and odd["n_unknown"] == 0
    # A lower threshold lets the 0.3 box count.
    assert completeness_by_bins(truths, predictions, snr, [3, 5, 10], score_threshold=0.2)["n_matched"] == [1, 1, 0, 1]


def test_completeness_by_snr_counts_add_up_to_the_totals():
    rng = np.random.default_rng(11)
    truths, predictions = random_case(rng, n_images=25)
    snr = [np.where(rng.random(len(t)) < 0.1, np.nan, rng.lognormal(2.5, 1.0, len(t))) for t in truths]
    metrics = evaluate_detections(truths, predictions, truth_snr=snr)
    threshold = metrics["operating_point"]["threshold"]
    index = metrics["curves"]["score_threshold"].index(threshold)
    for breakdown in (metrics["by_snr"], metrics["by_size"]):
        assert breakdown["threshold"] == threshold
        assert sum(breakdown["n_true"]) + breakdown["n_unknown"] == metrics["n_true"]
        # Truths found at the operating threshold are binned, except those of unknown value.
        assert sum(breakdown["n_matched"]) <= metrics["curves"]["n_matched"][index]
        rows = breakdown["per_class"].values()
        for key in ("n_true", "n_matched"):
            np.testing.assert_array_equal(np.sum([row[key] for row in rows], axis=0), breakdown[key])
        assert sum(row["n_unknown"] for row in rows) == breakdown["n_unknown"]
        for name, row in breakdown["per_class"].items():
            n_class = metrics["per_class"][name]["n_true"]
            assert sum(row["n_true"]) + row["n_unknown"] == n_class
    assert metrics["by_snr"]["n_unknown"] > 0 and metrics["by_size"]["n_unknown"] == 0
    assert sum(metrics["by_size"]["n_matched"]) == metrics["curves"]["n_matched"][index]
    # The same numbers from the standalone function at that threshold.
    np.testing.assert_equal(
        completeness_by_bins(truths, predictions, snr, metrics["by_snr"]["bin_edges"], score_threshold=threshold),
        metrics["by_snr"],
    )
    assert "by_snr" not in evaluate_detections(truths, predictions)


@pytest.mark.parametrize(
    "snr, match",
    [
        (lambda truths: [np.ones(len(t)) for t in truths[:-1]], "one array per image"),
        (lambda truths: [np.ones(len(t) + 1) for t in truths], "one value per truth"),
    ],
)
def test_truth_snr_must_match_the_truths(snr, match):
    truths, predictions = random_case(np.random.default_rng(4), n_images=3, max_true=3)
    truths[0] = truth(square(50, 50, 10))
    with pytest.raises(ValueError, match=match):
        evaluate_detections(truths, predictions, truth_snr=snr(truths))


def test_any_reordering_of_truths_and_predictions_without_ties_changes_nothing():
    rng = np.random.default_rng(3)
    truths, predictions = random_case(rng, n_images=15, jitter=3.0)
    metrics = evaluate_detections(truths, predictions)
    assert metrics["n_true"] > 0
    shuffled_truths = [t.select(rng.permutation(len(t))) for t in truths]
    shuffled_predictions = [p.select(rng.permutation(len(p))) for p in predictions]
    reordered = evaluate_detections(shuffled_truths, shuffled_predictions)
    np.testing.assert_equal(reordered["curves"], metrics["curves"])
    np.testing.assert_equal(reordered["by_size"], metrics["by_size"])


def test_recall_at_iou_half_agrees_with_pycocotools_on_random_cases():
    """Our completeness at score 0 equals pycocotools' recall at IoU 0.5, per class and pooled.

    Both match greedily by score per category with IoU >= 0.5; no crowd boxes, area range
    "all" and maxDets >= predictions per image make the rules coincide. Continuous random boxes
    make exact IoU ties (COCO breaks them toward the later truth, we toward the earlier) and
    IoU == 0.5 exactly (rounding may differ) events of probability zero.
    """
    rng = np.random.default_rng(7)
    for seed in range(5):
        truths, predictions = random_case(rng, n_images=20 + 10 * seed, max_false=3 + seed, jitter=1.0 + seed)
        ours = evaluate_detections(truths, predictions, score_thresholds=[0.0])
        coco = coco_average_precision(truths, predictions)
        assert 0 < ours["curves"]["completeness"][0] < 1
        assert ours["curves"]["completeness"][0] == pytest.approx(coco["class_agnostic"]["recall50"], abs=1e-12)
        for name in ("clump", "odd_clump"):
            assert ours["per_class"][name]["curves"]["completeness"][0] == pytest.approx(
                coco["per_class"][name]["recall50"], abs=1e-12
            )


def test_coco_ap_between_zero_and_one_and_lower_for_strict_iou():
    truths, predictions = random_case(np.random.default_rng(1), n_images=30, jitter=2.5)
    coco = coco_average_precision(truths, predictions)
    assert 0 < coco["AP"] < coco["AP50"] < 1
    assert coco["AP50"] == pytest.approx(np.mean([coco["per_class"][n]["AP50"] for n in ("clump", "odd_clump")]))


def test_metrics_report_json_has_headline_keys_and_both_iou_thresholds(tmp_path):
    truths, predictions = random_case(np.random.default_rng(2), n_images=10)
    report = metrics_report(truths, predictions)
    loaded = json.loads(write_metrics_json(report, tmp_path / "out" / "metrics.json").read_text())
    assert {"completeness", "purity", "per_class", "curves", "coco", "by_size"} <= loaded.keys()
    assert set(loaded["by_iou_threshold"]) == {"0.5", "0.3"}
    assert loaded["completeness"] == report["by_iou_threshold"]["0.5"]["completeness"]
    assert loaded["by_iou_threshold"]["0.3"]["criterion"]["iou_threshold"] == 0.3


def test_metrics_report_scores_by_centre_beside_iou():
    # Two clumps found at the right place with boxes twice the true side (IoU 0.25), one found
    # exactly, one false detection 10 px from any truth: IoU 0.5 sees 1 of 3; centres see 3 of 3.
    truths = [ImageBoxes([[10, 10, 20, 20], [50, 50, 60, 60], [100, 100, 110, 110]], [0, 0, 1])]
    predictions = [
        ImageBoxes(
            [[5, 5, 25, 25], [46, 46, 66, 66], [100, 100, 110, 110], [130, 130, 140, 140]],
            [0, 0, 1, 0],
            [0.9, 0.8, 0.7, 0.6],
        )
    ]
    report = metrics_report(truths, predictions, coco=False)
    assert report["by_centre"]["criterion"] == {"iou_threshold": None, "centre_distance": CENTRE_MATCH_DISTANCE}
    at_operating = report["centre_at_operating_threshold"]
    assert report["operating_point"]["threshold"] == at_operating["threshold"] == 0.61  # drops the false one
    assert (report["completeness"], report["purity"]) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    assert (at_operating["completeness"], at_operating["purity"]) == (1.0, 1.0)
    # A centre 1 px too far does not match.
    shifted = [ImageBoxes([[5, 5 + CENTRE_MATCH_DISTANCE + 1, 25, 25 + CENTRE_MATCH_DISTANCE + 1]], [0], [0.9])]
    far = metrics_report(truths[:1], shifted, coco=False, iou_thresholds=(0.5,))
    assert far["by_centre"]["curves"]["n_matched"][0] == 0
    assert "by_centre" not in metrics_report(truths, predictions, coco=False, centre_match_distance=None)
