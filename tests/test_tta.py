"""Dihedral geometry and test-time augmentation: box maps, the frame of merged boxes, the CLI flags."""

import json

import numpy as np
import pytest
import tensorflow as tf

from gsfc_tf import cli, commands, detector, tta
from gsfc_tf.config import smoke
from gsfc_tf.detector import Detector, default_min_score, validation_threshold
from gsfc_tf.models import build_detector
from gsfc_tf.ops import dihedral

SIZE = 32
# A bright 8 x 4 rectangle away from the corners: its bounding box is the fake model's main detection.
RECTANGLE_YXYX = [6.0, 10.0, 14.0, 14.0]
CORNER_YXYX = [0.0, 0.0, 4.0, 4.0]


def _rectangle_image(size=SIZE, box=RECTANGLE_YXYX, dtype=np.float32):
    image = np.zeros((size, size, 3), dtype)
    y1, x1, y2, x2 = (int(v) for v in box)
    image[y1:y2, x1:x2] = 255 if dtype == np.uint8 else 1.0
    return image


def _bright_box(images):
    """float32 [N, 4]: the yxyx bounding box (pixel edges) of each image's pixels above 0.5."""
    mask = tf.reduce_max(images, axis=-1) > 0.5
    index = tf.range(tf.shape(images)[1])

    def extent(any_along):
        first = tf.reduce_min(tf.where(any_along, index, tf.shape(images)[1]), axis=1)
        last = tf.reduce_max(tf.where(any_along, index + 1, 0), axis=1)
        return tf.cast(first, tf.float32), tf.cast(last, tf.float32)

    (y1, y2), (x1, x2) = extent(tf.reduce_any(mask, axis=2)), extent(tf.reduce_any(mask, axis=1))
    return tf.stack([y1, x1, y2, x2], axis=-1)


class FakeDetector:
    """Outputs a function of the image content: the bright pixels' box (score 0.9, class 1), and a
    fixed box in the top-left corner of whatever it is shown (score 0.3, class 0). Four empty slots."""

    def __init__(self, size=SIZE):
        self.detector_config = smoke(image_size=size, max_detections=6, agnostic_nms_iou=0.2)

    def __call__(self, images, training=False):
        count = tf.shape(images)[0]
        corner = tf.broadcast_to(tf.constant(CORNER_YXYX), [count, 4])
        return {
            "boxes": tf.concat([tf.stack([_bright_box(images), corner], axis=1), tf.zeros([count, 4, 4])], axis=1),
            "scores": tf.tile([[0.9, 0.3, 0.0, 0.0, 0.0, 0.0]], [count, 1]),
            "classes": tf.tile([[1, 0, 0, 0, 0, 0]], [count, 1]),
            "num_detections": tf.fill([count], 2),
        }


def test_box_maps_round_trip_and_follow_the_pixels():
    rng = np.random.default_rng(0)
    corner = rng.uniform(0, 20, (10, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(1, 12, (10, 2))], axis=1).astype(np.float32)
    image = _rectangle_image()
    moved_images = set()
    for draw in range(dihedral.NUM_DIHEDRAL):
        forward = dihedral.transform_boxes(boxes, draw, size=SIZE)
        np.testing.assert_allclose(dihedral.transform_boxes(forward, draw, size=SIZE, inverse=True), boxes, atol=1e-5)
        moved = dihedral.transform_images(image[None], draw)
        np.testing.assert_array_equal(
            _bright_box(moved)[0], dihedral.transform_boxes(tf.constant(RECTANGLE_YXYX), draw, size=SIZE)
        )
        moved_images.add(moved.numpy().tobytes())
    assert len(moved_images) == 8, "eight distinct transforms"


@pytest.mark.parametrize("merge", tta.TTA_MERGES)
def test_tta_boxes_come_back_in_the_original_frame(merge):
    model = FakeDetector()
    config = model.detector_config
    images = tf.constant(np.stack([_rectangle_image(), np.rot90(_rectangle_image())]))
    out = tta.detect_dihedral(
        model, images, merge=merge, nms_iou=config.nms_iou, agnostic_nms_iou=config.agnostic_nms_iou,
        containment_threshold=None, max_detections=config.max_detections,
    )
    assert out["boxes"].shape == (2, 6, 4) and out["num_detections"].numpy().tolist() == [5, 5]
    rotated_rectangle = dihedral.transform_boxes(tf.constant(RECTANGLE_YXYX), 2, size=SIZE).numpy()
    for image, rectangle in enumerate([RECTANGLE_YXYX, rotated_rectangle]):
        # Every view finds the rectangle: one box in the original frame, with the views' common score.
        np.testing.assert_allclose(out["boxes"][image, 0], rectangle, atol=1e-5)
        assert float(out["scores"][image, 0]) == pytest.approx(0.9) and int(out["classes"][image, 0]) == 1
        # The corner box lands in a different corner of the original for each pair of views: four
        # corners, each seen by 2 of 8 views (WBF scores them 2 x 0.3 / 8; NMS keeps 0.3).
        corners = {tuple(box) for box in out["boxes"][image, 1:5].numpy().round(3)}
        assert corners == {(0, 0, 4, 4), (0, 28, 4, 32), (28, 0, 32, 4), (28, 28, 32, 32)}
        np.testing.assert_allclose(out["scores"][image, 1:5], 0.3 * (2 / 8 if merge == "wbf" else 1), rtol=1e-6)


def test_tta_rejects_unknown_merge_and_non_square_images():
    model = FakeDetector()
    options = dict(nms_iou=0.5, agnostic_nms_iou=None, containment_threshold=None, max_detections=4)
    with pytest.raises(ValueError, match="TTA merge must be one of wbf, nms"):
        tta.detect_dihedral(model, tf.zeros([1, SIZE, SIZE, 3]), merge="mean", **options)
    with pytest.raises(ValueError, match="square images"):
        tta.detect_dihedral(model, tf.zeros([1, SIZE, 16, 3]), **options)
    with pytest.raises(ValueError, match="tta_merge must be one of"):
        Detector.from_model(model, tta=True, tta_merge="mean")


@pytest.mark.parametrize("merge", tta.TTA_MERGES)
def test_detector_tta_gives_input_pixels(merge):
    # A 64-px crop is halved to the fake model's 32 px; boxes come back in the crop's pixels.
    crop = _rectangle_image(64, [2 * v for v in RECTANGLE_YXYX], np.uint8)[None]
    plain = Detector.from_model(FakeDetector()).detect(crop)
    augmented = Detector.from_model(FakeDetector(), tta=True, tta_merge=merge).detect(crop)
    expected = [2 * v for v in RECTANGLE_YXYX]
    np.testing.assert_allclose(plain["boxes"][0, 0], expected, atol=1e-4)
    np.testing.assert_allclose(augmented["boxes"][0, 0], expected, atol=1e-4)
    assert augmented["num_detections"][0] == 5 and plain["num_detections"][0] == 2


def test_cli_tta_flags(tmp_path, monkeypatch):
    assert commands._TTA_MERGES == tta.TTA_MERGES and commands._TTA_MERGES[0] == tta.DEFAULT_TTA_MERGE
    for command in (["evaluate", "--out", "x"], ["export", "--out", "x/1"], ["predict", "image.png"]):
        args = cli._build_parser(command).parse_args([*command, "--model", "m", "--tta", "--tta-merge", "nms"])
        assert args.tta and args.tta_merge == "nms"
        args = cli._build_parser(command).parse_args([*command, "--model", "m"])
        assert not args.tta and args.tta_merge == tta.DEFAULT_TTA_MERGE

    # evaluate and predict load their detector with the flags (export's are run in test_export.py).
    loaded = []

    def load_detector(path, **options):
        loaded.append(options)
        raise FileNotFoundError("stop here")

    monkeypatch.setattr(detector, "load_detector", load_detector)
    for command in (["evaluate", "--out", str(tmp_path)], ["predict", "image.png", "--out", str(tmp_path / "c.csv")]):
        assert cli.main([*command, "--model", "m", "--tta", "--tta-merge", "nms"]) == 2
    assert loaded == [{"tta": True, "tta_merge": "nms"}] * 2


def test_tta_never_uses_a_threshold_chosen_without_tta(tmp_path):
    # The run's validation threshold was chosen on scores without TTA, which TTA changes.
    (tmp_path / "validation.json").write_text(json.dumps({"operating_point": {"threshold": 0.42}}))
    plain = Detector.from_model(FakeDetector(), run_dir=tmp_path)
    augmented = Detector.from_model(FakeDetector(), run_dir=tmp_path, tta=True)
    assert default_min_score(plain) == pytest.approx(0.42)
    assert validation_threshold(augmented) is None
    with pytest.raises(ValueError, match="no operating threshold chosen under TTA.*--min-score"):
        default_min_score(augmented)
    # A TTA export records its own threshold (or none); one chosen under TTA is used.
    exported = Detector(detect_fn=augmented.detect_fn, source="export", operating_threshold=0.3, tta=True)
    assert default_min_score(exported) == pytest.approx(0.3)
