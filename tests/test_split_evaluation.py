"""Tests for gsfc_tf.split_evaluation without a model (a detector on a split: tests/test_detector.py)."""

import pytest

from gsfc_tf import evaluation
from gsfc_tf.split_evaluation import point_at_threshold


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
