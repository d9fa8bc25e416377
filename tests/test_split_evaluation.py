"""Tests for gsfc_tf.split_evaluation without a model (a detector on a split: tests/test_detector.py)."""

import pytest

from gsfc_tf import evaluation
from gsfc_tf.evaluation import point_at_threshold
from gsfc_tf.split_evaluation import headline


def test_point_at_threshold_reads_the_curves():
    truths = [evaluation.ImageBoxes([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 0])]
    predictions = [
        evaluation.ImageBoxes([[0, 0, 10, 10], [50, 50, 60, 60], [80, 80, 90, 90]], [0, 0, 0], [0.9, 0.3, 0.6])
    ]
    metrics = evaluation.evaluate_detections(truths, predictions)
    assert point_at_threshold(metrics, 0.5) == {
        "threshold": 0.5, "completeness": 0.5, "purity": 0.5, "n_predicted": 2, "n_matched": 1
    }
    # Between grid points: the next one up, 0.31, which drops the 0.3 detection.
    assert point_at_threshold(metrics, 0.305)["completeness"] == 0.5
    assert point_at_threshold(metrics, 0.3)["purity"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="above the last"):
        point_at_threshold(metrics, 1.5)


def test_headline_gives_the_centre_match_beside_iou():
    truths = [evaluation.ImageBoxes([[10, 10, 20, 20], [50, 50, 60, 60]], [0, 0])]
    # The first clump boxed twice too large: found by centre, not at IoU 0.5.
    predictions = [evaluation.ImageBoxes([[5, 5, 25, 25], [50, 50, 60, 60]], [0, 0], [0.9, 0.8])]
    metrics = evaluation.metrics_report(truths, predictions, coco=False)
    metrics["fixed_threshold"] = {**point_at_threshold(metrics, 0.85), "centre": point_at_threshold(metrics["by_centre"], 0.85)}
    line = headline(metrics)
    assert line.startswith("completeness 0.500, purity 0.500 at score >= 0.00 (centres <= 4 px: 1.000 / 1.000)")
    assert line.endswith("at the validation threshold 0.85: completeness 0.000, purity 0.000 (centres <= 4 px: 0.500 / 1.000)")
