"""The conventions module: golden values, round trips, and the graph versions against numpy."""

import math

import numpy as np
import pytest
import tensorflow as tf

from gsfc_tf import conventions, data, ops
from tfds_clumpscout.clump_scout import preparation


def test_class_ids_golden_and_round_trip():
    assert conventions.CLASS_NAMES == ("clump", "odd_clump")
    labels = np.array([0, 1, 1, 0])
    np.testing.assert_array_equal(conventions.to_model_class(labels), [1, 2, 2, 1])
    np.testing.assert_array_equal(conventions.from_model_class(conventions.to_model_class(labels)), labels)
    assert conventions.from_model_class(conventions.BACKGROUND_CLASS) == conventions.PADDING
    # Works on tensors too (the model and the export use it in the graph).
    classes = conventions.to_model_class(tf.constant([0, 1]))
    np.testing.assert_array_equal(classes.numpy(), [1, 2])


def test_crop_geometry_is_the_builders_and_the_model_inputs():
    assert (conventions.CUTOUT_SIZE, conventions.CROP_SIZE, conventions.crop_offset()) == (400, 200, 100)
    rules = preparation.PreparationRules()
    assert (rules.cutout_size, rules.crop_size, rules.crop_offset) == (400, 200, 100)
    assert preparation.PreparationRules(crop_size=100, cutout_size=300).crop_offset == conventions.crop_offset(300, 100)
    # Another geometry reaches model_inputs: a 300-px cutout gives its central 100 px.
    cutout = np.zeros((1, 300, 300, 3), np.uint8)
    cutout[:, 100:200, 100:200] = 255
    resized, offset, scale = data.model_inputs(cutout, image_size=50, cutout_size=300, crop_size=100)
    assert np.asarray(resized).min() == 1.0
    np.testing.assert_array_equal(offset, [100, 100])
    np.testing.assert_allclose(scale, [0.5, 0.5])


def test_window_frames_golden():
    # Cutout pixels -> crop pixels: the crop is a window at the crop offset, scale 1.
    cutout_box = np.array([150.0, 120.0, 166.0, 136.0])
    crop_box = conventions.to_window(cutout_box, offset_yx=conventions.crop_offset())
    np.testing.assert_array_equal(crop_box, [50, 20, 66, 36])
    # Pixels of a 200 x 400 (H x W) image -> normalised: pixels are a window on the unit square.
    np.testing.assert_allclose(conventions.from_window([20, 40, 60, 80], scale_yx=(200, 400)), [0.1, 0.1, 0.3, 0.2])
    # Input image -> model input, as data.model_inputs describes it: (p - offset) * scale.
    np.testing.assert_allclose(conventions.to_window([110, 120, 130, 140], scale_yx=(2, 4), offset_yx=(100, 100)),
                               [20, 80, 60, 160])


def test_window_frames_round_trip_and_graph_versions_agree():
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 400, (3, 5, 4)).astype(np.float32)
    scale, offset = np.array([1.7, 0.3], np.float32), np.array([12.0, -5.0], np.float32)
    inside = conventions.to_window(boxes, scale_yx=scale, offset_yx=offset)
    assert inside.dtype == np.float32
    np.testing.assert_allclose(conventions.from_window(inside, scale_yx=scale, offset_yx=offset), boxes, rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(ops.to_window(boxes, scale_yx=scale, offset_yx=offset).numpy(), inside)
    np.testing.assert_array_equal(
        ops.from_window(inside, scale_yx=scale, offset_yx=offset).numpy(),
        conventions.from_window(inside, scale_yx=scale, offset_yx=offset),
    )
    # Inside tf.function, with a [2] tensor scale (as data.from_tfds_example passes it).
    graph = tf.function(lambda b, s: ops.to_window(b, scale_yx=s))
    np.testing.assert_array_equal(graph(boxes, scale).numpy(), conventions.to_window(boxes, scale_yx=scale))


def test_xywh_and_centres_golden():
    boxes = np.array([[10.0, 20.0, 26.0, 36.0], [0.0, 0.0, 4.0, 8.0]])
    np.testing.assert_array_equal(conventions.yxyx_to_xywh(boxes), [[20, 10, 16, 16], [0, 0, 8, 4]])
    np.testing.assert_array_equal(conventions.box_centres_xy(boxes), [[28, 18], [4, 2]])


def test_iou_golden_padding_and_empty_union():
    a = np.array([[0.0, 0, 10, 10], [5, 5, 5, 5]])
    b = np.array([[5.0, 5, 15, 15], [-1, -1, -1, -1], [20, 20, 30, 30], [5, 5, 5, 5]])
    expected = [[25 / 175, -1.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0]]
    np.testing.assert_allclose(conventions.pairwise_iou(a, b), expected)
    assert conventions.PADDED_IOU == -1.0


def test_numpy_and_graph_iou_are_one_rule():
    rng = np.random.default_rng(1)
    corner = rng.uniform(0, 150, (40, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(0, 40, (40, 2))], axis=1).astype(np.float32)
    boxes[:5] = -1.0  # padding
    boxes[5:8, 2:] = boxes[5:8, :2]  # zero area
    np.testing.assert_allclose(ops.box_iou(boxes, boxes).numpy(), conventions.pairwise_iou(boxes, boxes), atol=1e-6)


def test_operating_index_golden():
    completeness = np.array([1.0, 0.9, 0.85, 0.6])
    purity = np.array([0.5, 0.8, 0.85, 0.95])
    assert conventions.operating_index(completeness, purity) == 2
    # A tie on min(completeness, purity): the larger sum wins, then the lower threshold.
    assert conventions.operating_index([0.9, 0.8, 0.8], [0.8, 0.9, 0.8]) == 0
    assert conventions.operating_index([0.8, 0.9], [0.8, 0.8]) == 1
    assert conventions.operating_index([math.nan] * 3, [1.0] * 3) is None


def test_operating_score():
    assert conventions.operating_score({"completeness": 0.7, "purity": 0.9}) == 0.7
    assert conventions.operating_score({"completeness": None, "purity": None}) == -math.inf


@pytest.mark.parametrize("label, expected", [("1", 0), ("2", 1), ("2.0", 1), ("3", -1), ("1.5", -1), ("", -1), ("x", -1)])
def test_crop_catalogue_labels_are_one_based_class_ids(tmp_path, label, expected):
    path = tmp_path / "crop.csv"
    path.write_text(f"local_ids,label,x1,x2,y1,y2\ng1,{label},60,76,60,76\n")
    _, (row,) = preparation.read_catalogue(path, preparation.PreparationRules())
    assert row.class_id == expected


def test_boxes_with_side_keeps_centres_and_clips():
    boxes = np.array([[10.0, 20.0, 14.0, 30.0], [0.0, 0.0, 2.0, 2.0]])
    squares = conventions.boxes_with_side(boxes, [6.0, 8.0])
    np.testing.assert_allclose(squares, [[9.0, 22.0, 15.0, 28.0], [-3.0, -3.0, 5.0, 5.0]])
    np.testing.assert_allclose(conventions.boxes_with_side(boxes, 8.0, image_hw=(16, 26))[:, 2:], [[16.0, 26.0], [5.0, 5.0]])
    assert conventions.boxes_with_side(np.zeros((0, 4)), 5.0).shape == (0, 4)
