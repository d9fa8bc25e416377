"""Tests for gsfc_tf.detector: loading, the input-pixel box mapping, and a detector through evaluation and catalogues."""

import dataclasses
import json
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from gsfc_tf import conventions, data, evaluation
from gsfc_tf.config import TrainConfig, smoke
from gsfc_tf.catalogue import predict_catalogue
from gsfc_tf.commands.predict import format_summary
from gsfc_tf.detector import (
    DEFAULT_MIN_SCORE,
    Detector,
    default_min_score,
    load_detector,
    run_dataset,
    threshold_or_default,
)
from gsfc_tf.models import build_detector
from gsfc_tf.split_evaluation import evaluate_examples, write_evaluation
from tfds_clumpscout.clump_scout import clump_scout_dataset_builder as builder_module

TINY_DATASET = "clump_scout/synthetic_tiny"
# A detector that keeps every box: an untrained model's scores sit near 1/3.
DETECTOR_CONFIG = smoke(score_threshold=0.0)


def save_run_dir(path, *, validation_threshold=None):
    """A training run directory as the trainer writes it: model.keras, config.json, optional validation.json."""
    path.mkdir(parents=True)
    build_detector(DETECTOR_CONFIG).save(path / "model.keras")
    config = TrainConfig(detector=DETECTOR_CONFIG, dataset=TINY_DATASET)
    (path / "config.json").write_text(json.dumps(dataclasses.asdict(config)))
    if validation_threshold is not None:
        (path / "validation.json").write_text(json.dumps({"operating_point": {"threshold": validation_threshold}}))
    return path


def build_tiny_split(data_dir):
    """Prepares `clump_scout/synthetic_tiny` (4 test galaxies) in `data_dir`."""
    config = builder_module.ClumpScoutConfig(
        name="synthetic_tiny", source="synthetic", num_train=1, num_validation=1, num_test=4
    )
    builder_module.Builder(config=config, data_dir=str(data_dir)).download_and_prepare()
    return data_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return save_run_dir(tmp_path_factory.mktemp("runs") / "run", validation_threshold=0.25)


@pytest.fixture(scope="module")
def detector(run_dir):
    return load_detector(run_dir)


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory):
    return build_tiny_split(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def test_split(tiny_data_dir):
    """(examples, crops uint8 [H, W, 3], truths in crop pixels) of the tiny test split."""
    examples = data.load_tfds_split(TINY_DATASET, "test", data_dir=str(tiny_data_dir))
    crops, truths = [], []
    for example in examples:
        image, boxes_yxyx, labels = data.from_tfds_example(example)
        crops.append(image.numpy())
        truths.append(evaluation.ImageBoxes(boxes_yxyx.numpy(), labels.numpy()))
    assert len(crops) == 4
    return examples, crops, truths


class OracleModel:
    """A stand-in Keras detector that answers with the true boxes, in the model's S frame.

    It recognises which known galaxy it is shown by the mean of its (resized) input, so it
    answers correctly in any batch order; the boxes it returns are the crop-pixel truths
    scaled to S, exactly what a perfect model would predict.
    """

    def __init__(self, crops, truths, *, image_size, max_detections=16):
        self.detector_config = types.SimpleNamespace(image_size=image_size)
        resized, _, scale = data.model_inputs(np.stack(crops), image_size=image_size)
        self.keys = resized.numpy().mean(axis=(1, 2, 3))
        assert np.min(np.diff(np.sort(self.keys))) > 1e-4, "galaxies must be told apart by their mean"
        self.boxes = np.zeros((len(crops), max_detections, 4), np.float32)
        self.classes = np.zeros((len(crops), max_detections), np.int32)
        self.num = np.array([len(t) for t in truths], np.int32)
        for g, truth in enumerate(truths):
            self.boxes[g, : len(truth)] = truth.boxes_yxyx * np.tile(scale.numpy(), 2)
            self.classes[g, : len(truth)] = truth.labels

    def _lookup(self, images):
        index = np.abs(images.numpy().mean(axis=(1, 2, 3))[:, None] - self.keys[None]).argmin(axis=1)
        scores = (np.arange(self.boxes.shape[1])[None] < self.num[index][:, None]).astype(np.float32)
        return self.boxes[index], scores, self.classes[index], self.num[index]

    def __call__(self, images, training=False):
        boxes, scores, classes, num = tf.py_function(
            self._lookup, [images], [tf.float32, tf.float32, tf.int32, tf.int32]
        )
        return {"boxes": boxes, "scores": scores, "classes": classes, "num_detections": num}


def save_png(path, image):
    Image.fromarray(image).save(path)
    return path


def as_cutout(crop):
    """A 400x400 cutout whose central 200x200 is `crop` (the frame the builder crops)."""
    cutout = np.zeros((conventions.CUTOUT_SIZE, conventions.CUTOUT_SIZE, 3), np.uint8)
    margin = conventions.crop_offset()
    cutout[margin : margin + conventions.CROP_SIZE, margin : margin + conventions.CROP_SIZE] = crop
    return cutout


def test_threshold_or_default_takes_the_operating_threshold_else_the_default_but_never_guesses_under_tta():
    for tta in (False, True):
        assert threshold_or_default(0.3, tta=tta, source="m") == 0.3
        assert threshold_or_default(0.0, tta=tta, source="m") == 0.0
    assert threshold_or_default(None, tta=False, source="m") == DEFAULT_MIN_SCORE
    message = (
        "m with TTA has no operating threshold chosen under TTA; choose one with "
        "`gsfc-tf evaluate --tta --split validation` and pass it with --min-score."
    )
    with pytest.raises(ValueError) as error:
        threshold_or_default(None, tta=True, source="m")
    assert str(error.value) == message


def test_load_detector_from_run_dir_and_keras_file(run_dir, detector, tmp_path):
    assert detector.run_dir == run_dir
    assert run_dataset(detector) == TINY_DATASET
    assert default_min_score(detector) == 0.25
    # A .keras file in a run dir still finds the run; a bare one has no run files to read.
    assert load_detector(run_dir / "model.keras").run_dir == run_dir
    bare = tmp_path / "bare.keras"
    bare.write_bytes((run_dir / "model.keras").read_bytes())
    loose = load_detector(bare)
    assert loose.run_dir is None and default_min_score(loose) == DEFAULT_MIN_SCORE
    assert run_dataset(loose) is None, "no dataset is guessed for a model that records none"
    with pytest.raises(FileNotFoundError, match="run directory"):
        load_detector(tmp_path)


def test_detector_maps_cutout_and_crop_to_the_same_clumps(run_dir, detector, test_split):
    _, crops, _ = test_split
    crop_outputs = detector.detect(np.stack(crops[:2]))
    cutout_outputs = detector.detect(np.stack([as_cutout(c) for c in crops[:2]]))
    n = crop_outputs["num_detections"]
    assert n.min() > 0
    np.testing.assert_array_equal(n, cutout_outputs["num_detections"])
    np.testing.assert_allclose(cutout_outputs["scores"], crop_outputs["scores"], atol=1e-5)
    for b in range(2):
        np.testing.assert_allclose(
            cutout_outputs["boxes"][b, : n[b]], crop_outputs["boxes"][b, : n[b]] + 100, atol=1e-3
        )
    # In crop pixels: the raw model's S-frame boxes divided by S / 200.
    model_inputs, _, scale = data.model_inputs(np.stack(crops[:2]), image_size=DETECTOR_CONFIG.image_size)
    raw = keras.saving.load_model(run_dir / "model.keras")(model_inputs, training=False)
    np.testing.assert_allclose(crop_outputs["boxes"][0, : n[0]], raw["boxes"][0, : n[0]] / scale[0], atol=1e-3)
    assert crop_outputs["boxes"].max() <= conventions.CROP_SIZE


def test_detect_checks_its_input(detector):
    with pytest.raises(ValueError, match="uint8 images"):
        detector.detect(np.zeros((1, 200, 200, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(200, 200, 3\)"):
        detector.detect(np.zeros((200, 200, 3), np.uint8))


def test_perfect_detections_score_one_through_the_evaluation_path(test_split):
    examples, crops, truths = test_split
    oracle = Detector.from_model(OracleModel(crops, truths, image_size=DETECTOR_CONFIG.image_size), source="oracle")
    result = evaluate_examples(oracle, examples, batch_size=3, progress=False)
    assert result.metrics["n_images"] == 4 and result.metrics["n_true"] == sum(len(t) for t in truths)
    assert result.metrics["completeness"] == result.metrics["purity"] == 1.0
    assert result.metrics["coco"]["AP"] == pytest.approx(1.0)
    for truth, prediction in zip(truths, result.predictions):
        np.testing.assert_allclose(prediction.boxes_yxyx, truth.boxes_yxyx, atol=1e-3)
        np.testing.assert_array_equal(prediction.labels, truth.labels)


def test_perfect_detections_land_on_the_cutout_pixels(test_split, tmp_path):
    _, crops, truths = test_split
    oracle = Detector.from_model(OracleModel(crops, truths, image_size=DETECTOR_CONFIG.image_size), source="oracle")
    # Mixed sizes (cutout, crop, cutout) with batch 2: the batches regroup by size, rows keep input order.
    paths = [
        save_png(tmp_path / "g0.png", as_cutout(crops[0])),
        save_png(tmp_path / "g1.png", crops[1]),
        save_png(tmp_path / "g2.png", as_cutout(crops[2])),
    ]
    # Every true box, on the host or not (the host mask drops the far-out ones: test_catalogue_science).
    result = predict_catalogue(oracle, paths, min_score=0.5, batch_size=2, host_mask="off")
    assert result.processed == paths and result.skipped == []
    assert [row.galaxy_id for row in result.rows] == [f"g{g}" for g in range(3) for _ in truths[g].labels]
    for g, offset in ((0, 100), (1, 0), (2, 100)):
        rows = [row for row in result.rows if row.galaxy_id == f"g{g}"]
        got = np.array([[r.y_min, r.x_min, r.y_max, r.x_max] for r in rows])
        np.testing.assert_allclose(got, truths[g].boxes_yxyx + offset, atol=1e-3)
        assert [r.class_id for r in rows] == truths[g].labels.tolist()
        assert all(np.isnan(r.ra) and np.isnan(r.dec) for r in rows)


def test_evaluate_examples_with_a_model_writes_metrics_and_plots(detector, test_split, tmp_path):
    examples, _, truths = test_split
    result = evaluate_examples(
        detector, examples, batch_size=2, limit=3, keep_images=2, fixed_threshold=0.0, progress=False
    )
    assert len(result.ids) == len(result.truths) == len(result.predictions) == 3
    assert len(result.images) == 2 and result.images[0].shape == (200, 200, 3)
    assert result.ids == [example["image/id"].decode() for example in tfds.as_numpy(examples.take(3))]
    for truth, expected in zip(result.truths, truths):
        np.testing.assert_allclose(truth.boxes_yxyx, expected.boxes_yxyx)
    written = write_evaluation(result, tmp_path / "eval")
    assert sorted(p.name for p in written.values()) == [
        "completeness_by_size.png", "completeness_by_snr.png", "completeness_purity.png", "detections.png",
        "metrics.json",
    ]
    metrics = json.loads(written["metrics"].read_text())
    assert {"completeness", "purity", "per_class", "curves", "coco", "by_size", "by_snr"} <= set(metrics)
    assert metrics["n_images"] == 3
    # Synthetic clumps all carry their SNR, read image for image, truth for truth.
    snr = [example["objects"]["snr"] for example in tfds.as_numpy(examples.take(3))]
    np.testing.assert_equal(
        result.metrics["by_snr"],
        evaluation.completeness_by_bins(
            result.truths, result.predictions, snr, evaluation.DEFAULT_SNR_BIN_EDGES,
            score_threshold=metrics["operating_point"]["threshold"],
        ),
    )
    assert metrics["by_snr"]["n_unknown"] == 0 and sum(metrics["by_snr"]["n_true"]) == metrics["n_true"]
    # Threshold 0 counts every prediction.
    n_predicted = sum(len(p) for p in result.predictions)
    assert metrics["fixed_threshold"]["n_predicted"] == metrics["n_predicted"] == n_predicted
    for name in ("completeness_purity", "detections", "completeness_by_size", "completeness_by_snr"):
        assert written[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_exported_saved_model_detects_like_the_keras_model(run_dir, detector, test_split, tmp_path):
    export = pytest.importorskip("gsfc_tf.export")
    export.export_saved_model(keras.saving.load_model(run_dir / "model.keras"), tmp_path / "gsfc" / "1")
    _, crops, _ = test_split
    cutouts = np.stack([as_cutout(c) for c in crops[:2]])
    expected = detector.detect(cutouts)
    for path in (tmp_path / "gsfc", tmp_path / "gsfc" / "1"):
        served = load_detector(path)
        assert served.run_dir is None
        got = served.detect(cutouts)
        np.testing.assert_array_equal(got["num_detections"], expected["num_detections"])
        np.testing.assert_array_equal(got["classes"], expected["classes"])
        np.testing.assert_allclose(got["scores"], expected["scores"], atol=1e-5)
        np.testing.assert_allclose(got["boxes"], expected["boxes"], atol=1e-3)


def one_clump_each(images):
    """A stand-in `detect_fn`: one clump (score 0.9) at pixels [10, 10, 20, 20] of every image."""
    count = tf.shape(images)[0]
    return {
        "boxes": tf.tile(tf.constant([[[10.0, 10.0, 20.0, 20.0]]]), [count, 1, 1]),
        "scores": tf.fill([count, 1], 0.9),
        "classes": tf.zeros([count, 1], tf.int32),
        "num_detections": tf.ones([count], tf.int32),
    }


def test_predict_catalogue_keeps_files_sharing_a_stem_apart_and_accounts_for_every_input(tmp_path):
    (tmp_path / "sub").mkdir()
    rng = np.random.default_rng(1)
    paths = [save_png(tmp_path / "lone.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))]
    for name in ("good.png", "good.jpg", "sub/good.png"):
        image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(image).save(tmp_path / name)
        paths.append(tmp_path / name)
    paths.append(tmp_path / "missing.png")
    # Noise images have no host galaxy: the host mask is off to keep the rows this test counts.
    result = predict_catalogue(Detector(detect_fn=one_clump_each, source="fake"), paths, min_score=0.5, batch_size=2,
                               host_mask="off")
    ids = ["lone", "good.png", "good.jpg", "sub/good.png", "missing"]
    assert [row.galaxy_id for row in result.rows] == ids[:4], "one row per file, none merged"
    assert [(image.galaxy_id, image.path, image.status, image.n_clumps) for image in result.images] == [
        (gid, str(path), status, n) for gid, path, (status, n) in zip(ids, paths, [("detected", 1)] * 4 + [("unreadable", 0)])
    ]
    assert "missing.png" in result.images[-1].reason and result.skipped == [(paths[-1], result.images[-1].reason)]
    assert format_summary(result) == "4 clumps in 4 of 4 galaxies; 1 unreadable input skipped"
    strict = predict_catalogue(Detector(detect_fn=one_clump_each, source="fake"), paths[:2], min_score=0.95)
    assert strict.rows == [] and [image.status for image in strict.images] == ["no_clumps", "no_clumps"]


def test_detector_warns_once_per_size_about_images_far_larger_than_a_cutout(caplog):
    detector = Detector(detect_fn=one_clump_each, source="fake")
    with caplog.at_level("WARNING", logger="gsfc_tf.detector"):
        for height, width in ((4000, 4000), (200, 200), (400, 400), (4000, 4000), (1000, 800)):
            detector.detect(np.zeros((1, height, width, 3), np.uint8))
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("4000x4000 px input is 10x the 400-px training cutout")
    assert "20x smaller than in training" in messages[0] and "does not tile" in messages[0]
    assert messages[1].startswith("1000x800 px input is 2.5x the 400-px training cutout")


def test_load_detector_names_a_corrupt_model_file(run_dir, tmp_path):
    truncated = tmp_path / "run"
    truncated.mkdir()
    (truncated / "model.keras").write_bytes((run_dir / "model.keras").read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"run/model\.keras is not a Keras model: not a zip archive"):
        load_detector(truncated)
