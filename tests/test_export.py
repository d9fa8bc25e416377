"""SavedModel export: fresh-process round trip of both signatures, saved_model_cli, errors.

One export (module fixture) of a smoke detector whose score threshold is the median score of
the first galaxy, so outputs hold both detections and padding; it is exported with that threshold
as its operating threshold, so every signature serves what the model keeps (an untrained model's
scores, near 1/3, sit below `DEFAULT_MIN_SCORE`). Every check compares with the in-memory
`model.predict` mapped to the export's conventions here, in numpy.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from gsfc_tf import cli
from gsfc_tf.catalogue import read_cutout
from gsfc_tf.config import TrainConfig, config_from_dict, smoke
from gsfc_tf.data import model_inputs
from gsfc_tf.detector import (
    ALL_DETECTIONS_SIGNATURE,
    BYTES_SIGNATURE,
    DEFAULT_MIN_SCORE,
    METADATA_PATH,
    TENSOR_SIGNATURE,
    Detector,
    default_min_score,
    load_detector,
    load_exported,
)
from gsfc_tf.export import _decode_images, check_export_dir
from gsfc_tf.models import FasterRCNN, build_detector, with_postprocess
from tfds_clumpscout.clump_scout.synthetic import generate_galaxy

SAVED_MODEL_CLI = Path(sys.executable).with_name("saved_model_cli")
OUTPUT_KEYS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")

# Runs without gsfc_tf, as TF Serving would: only TensorFlow and the SavedModel.
FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    export_dir, inputs, out = sys.argv[1:]
    model = tf.saved_model.load(export_dir)
    encoded = [open(f"{inputs}/cutout0.png", "rb").read(), open(f"{inputs}/cutout1.jpg", "rb").read()]
    by_bytes = model.signatures["serving_default"](image_bytes=tf.constant(encoded))
    by_tensor = model.signatures["serving_tensor"](images=tf.constant(np.load(f"{inputs}/crops.npy")))
    np.savez(
        out,
        gsfc_tf_imported=np.array("gsfc_tf" in sys.modules),
        **{"bytes_" + k: v.numpy() for k, v in by_bytes.items()},
        **{"tensor_" + k: v.numpy() for k, v in by_tensor.items()},
    )
    """
)


def _expected(model, images: np.ndarray, *, normalised: bool) -> dict[str, np.ndarray]:
    """`model.predict` on `images` uint8 [B, H, W, 3], boxes mapped to input pixels in numpy.

    normalised=True gives the export's outputs (boxes / (H, W), classes 1/2, padding 0);
    False the internal form `load_exported` returns (pixel boxes, classes 0/1).
    """
    inputs, offset, scale = (np.asarray(t) for t in model_inputs(images, image_size=model.detector_config.image_size))
    predicted = model.predict(inputs, verbose=0)
    num = predicted["num_detections"]
    valid = np.arange(predicted["scores"].shape[1])[None] < num[:, None]
    boxes = predicted["boxes"] / np.tile(scale, 2) + np.tile(offset, 2)
    if normalised:
        boxes = boxes / np.tile(images.shape[1:3], 2)
    classes = predicted["classes"] + (1 if normalised else 0)
    keys = OUTPUT_KEYS if normalised else ("num_detections", "boxes", "scores", "classes")
    values = (num, np.where(valid[..., None], boxes, 0.0), np.where(valid, predicted["scores"], 0.0), np.where(valid, classes, 0))
    return dict(zip(keys, values))


def _assert_outputs_equal(actual, expected):
    assert set(actual) == set(expected)
    for key, want in expected.items():
        got = np.asarray(actual[key])
        assert got.shape == want.shape, key
        if np.issubdtype(want.dtype, np.integer):
            np.testing.assert_array_equal(got, want, err_msg=key)
        else:
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=0, err_msg=key)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    keras.utils.set_random_seed(0)
    cutouts = np.stack([generate_galaxy(seed, image_size=400).image for seed in (1, 2)])
    # Non-square, so a y/x mix-up in the box mapping shows.
    crops = np.stack([generate_galaxy(seed, image_size=200).image[:150] for seed in (3, 4)])

    probe_config = smoke(score_threshold=0.0)
    probe = build_detector(probe_config)
    first_scores = probe.predict(model_inputs(cutouts, image_size=probe_config.image_size)[0], verbose=0)["scores"][0]
    config = dataclasses.replace(probe_config, score_threshold=float(np.median(first_scores)))
    model = build_detector(config)
    model.set_weights(probe.get_weights())
    run_dir = root / "run"
    run_dir.mkdir()
    model.save(run_dir / "model.keras")

    inputs = root / "inputs"
    inputs.mkdir()
    (inputs / "cutout0.png").write_bytes(tf.io.encode_png(cutouts[0]).numpy())
    (inputs / "cutout1.jpg").write_bytes(tf.io.encode_jpeg(cutouts[1], quality=90).numpy())
    np.save(inputs / "crops.npy", crops)
    # What the server sees: the JPEG's decoded pixels (as the project's reader decodes them), not the original ones.
    decoded = np.stack([cutouts[0], read_cutout(inputs / "cutout1.jpg")[0]])

    base = root / "serving"
    (base / "1").mkdir(parents=True)
    (base / "1" / "stale.txt").write_text("an older export")
    export = ["export", "--model", str(run_dir), "--out", str(base / "1"), "--overwrite"]
    assert cli.main([*export, "--min-score", repr(config.score_threshold)]) == 0
    return dict(
        model=model,
        config=config,
        run_dir=run_dir,
        base=base,
        version=base / "1",
        inputs=inputs,
        decoded=decoded,
        crops=crops,
    )


@pytest.fixture(scope="module")
def loaded(exported):
    return load_exported(exported["version"])


def test_layout_and_metadata(exported):
    assert sorted(p.name for p in exported["base"].iterdir()) == ["1"], "no staging directory or stale file left"
    version = exported["version"]
    assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()
    assert not (version / "stale.txt").exists()
    metadata = json.loads((version / METADATA_PATH).read_text())
    config = exported["config"]
    assert metadata["detection_classes"] == {"1": "clump", "2": "odd_clump"}
    assert metadata["image_size"] == config.image_size
    assert metadata["score_threshold"] == metadata["operating_threshold"] == config.score_threshold
    assert metadata["detector"] == json.loads(json.dumps(dataclasses.asdict(config)))
    assert metadata["dataset"] is None, "the model's folder holds no config.json to name its dataset"


def test_fresh_process_round_trip_both_signatures(exported, tmp_path):
    out = tmp_path / "outputs.npz"
    subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(exported["version"]), str(exported["inputs"]), str(out)],
        check=True,
        cwd=tmp_path,
    )
    got = np.load(out)
    assert not got["gsfc_tf_imported"]
    model = exported["model"]
    for prefix, images in (("bytes_", exported["decoded"]), ("tensor_", exported["crops"])):
        expected = _expected(model, images, normalised=True)
        _assert_outputs_equal({k: got[prefix + k] for k in OUTPUT_KEYS}, expected)
    # The threshold leaves detections and padding in the batch, so both are checked above.
    num = got["bytes_num_detections"]
    assert num[0] > 0 and num.min() < model.detector_config.max_detections
    valid_classes = got["bytes_detection_classes"][0, : num[0]]
    assert set(valid_classes) <= {1, 2}


def test_saved_model_cli_show_lists_signatures(exported):
    shown = subprocess.run(
        [str(SAVED_MODEL_CLI), "show", "--dir", str(exported["version"]), "--all"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for signature, input_key, dtype in ((BYTES_SIGNATURE, "image_bytes", "DT_STRING"), (TENSOR_SIGNATURE, "images", "DT_UINT8")):
        block = shown.split(f"signature_def['{signature}']:")[1].split("signature_def[")[0]
        assert f"inputs['{input_key}'] tensor_info:" in block and dtype in block
        for key in OUTPUT_KEYS:
            assert f"outputs['{key}'] tensor_info:" in block


def test_saved_model_cli_run_tensor_signature(exported, tmp_path):
    subprocess.run(
        [
            str(SAVED_MODEL_CLI), "run", "--dir", str(exported["version"]), "--tag_set", "serve",
            "--signature_def", TENSOR_SIGNATURE, "--inputs", f"images={exported['inputs'] / 'crops.npy'}",
            "--outdir", str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    got = {key: np.load(tmp_path / f"{key}.npy") for key in OUTPUT_KEYS}
    _assert_outputs_equal(got, _expected(exported["model"], exported["crops"], normalised=True))


def test_served_jpeg_pixels_are_the_readers(exported):
    # The SavedModel and `predict`/the builder must see the same pixels of one JPEG file.
    path = exported["inputs"] / "cutout1.jpg"
    served = _decode_images(tf.constant([path.read_bytes()]))[0].numpy()
    np.testing.assert_array_equal(served, read_cutout(path)[0])


def test_load_exported_gives_internal_form(exported, loaded):
    _assert_outputs_equal(loaded(exported["crops"]), _expected(exported["model"], exported["crops"], normalised=False))
    with pytest.raises(ValueError, match=r"Expected uint8 images \[B, H, W, 3\], got float32"):
        loaded(exported["crops"].astype(np.float32))


def test_load_exported_refuses_an_export_without_all_detections(tmp_path):
    module = tf.Module()
    module.serve = tf.function(lambda images: {"num_detections": tf.zeros([1], tf.int32)}, input_signature=[tf.TensorSpec(None, tf.uint8)])
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={TENSOR_SIGNATURE: module.serve})
    with pytest.raises(ValueError, match="no 'all_detections' signature.*export the run again"):
        load_exported(tmp_path)


def test_load_exported_picks_highest_version(exported, tmp_path):
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "saved_model.pb").write_bytes(b"not a SavedModel")
    (tmp_path / "10").symlink_to(exported["version"], target_is_directory=True)
    (tmp_path / "11").mkdir()  # no saved_model.pb: not a version
    detect = load_exported(tmp_path)
    _assert_outputs_equal(detect(exported["crops"]), _expected(exported["model"], exported["crops"], normalised=False))
    with pytest.raises(FileNotFoundError, match="holds no SavedModel"):
        load_exported(tmp_path / "11")


@pytest.mark.parametrize(
    "case, message",
    [
        ("not_an_image", r"neither PNG nor JPEG:\] \[1\]"),
        ("truncated_png", r"Invalid PNG"),
        ("mixed_sizes", r"all images in one request must have the same height and width"),
        ("empty", r"the request holds no images"),
    ],
)
def test_bad_bytes_fail_clearly_and_next_request_works(exported, loaded, case, message):
    serve = loaded.saved_model.signatures[BYTES_SIGNATURE]
    png = (exported["inputs"] / "cutout0.png").read_bytes()
    requests = {
        "not_an_image": [png, b"<html>not an image</html>"],
        "truncated_png": [png, png[:200]],
        "mixed_sizes": [png, tf.io.encode_png(exported["crops"][0]).numpy()],
        "empty": [],
    }
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        serve(image_bytes=tf.constant(requests[case], tf.string))
    expected = _expected(exported["model"], exported["decoded"][:1], normalised=True)
    _assert_outputs_equal(serve(image_bytes=tf.constant([png])), expected)


def test_refuses_to_overwrite_or_non_integer_version(exported, capsys):
    version = exported["version"]
    with pytest.raises(FileExistsError, match="already holds a SavedModel"):
        check_export_dir(version)
    with pytest.raises(ValueError, match="integer version"):
        check_export_dir(exported["base"] / "latest")
    assert check_export_dir(version, overwrite=True) == version
    # User errors exit 2 with one line, like every other command.
    assert cli.main(["export", "--model", str(exported["run_dir"]), "--out", str(version)]) == 2
    assert "already holds a SavedModel" in capsys.readouterr().err
    assert cli.main(["export", "--model", str(exported["base"]), "--out", str(exported["base"] / "2")]) == 2
    assert "neither a run directory" in capsys.readouterr().err


def test_refusing_a_folder_that_holds_no_model_says_what_it_holds(exported, tmp_path, capsys):
    version = tmp_path / "serving" / "1"
    version.mkdir(parents=True)
    (version / "notes.txt").write_text("mine")
    assert cli.main(["export", "--model", str(exported["run_dir"]), "--out", str(version)]) == 2
    err = capsys.readouterr().err
    assert f"{version} is not empty: it holds notes.txt;" in err and "--overwrite" in err and err.count("\n") == 1
    assert "SavedModel" not in err and (version / "notes.txt").read_text() == "mine"
    (tmp_path / "serving" / "2").write_text("a file")
    with pytest.raises(FileExistsError, match="is a file, not a version directory"):
        check_export_dir(tmp_path / "serving" / "2")


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate", r"truncated\.keras is not a Keras model: not a zip archive"),
        ("weights", r"weights\.keras is not a readable Keras model: OSError: .*truncated file"),
    ],
)
def test_export_of_a_corrupt_model_names_the_file_and_the_damage(exported, tmp_path, capsys, damage, message):
    original = exported["run_dir"] / "model.keras"
    damaged = tmp_path / f"{'truncated' if damage == 'truncate' else 'weights'}.keras"
    if damage == "truncate":
        damaged.write_bytes(original.read_bytes()[:5000])
    else:
        with zipfile.ZipFile(original) as source, zipfile.ZipFile(damaged, "w") as target:
            for info in source.infolist():
                content = source.read(info.filename)
                target.writestr(info, content[:1000] if info.filename.endswith(".h5") else content)
    assert cli.main(["export", "--model", str(damaged), "--out", str(tmp_path / "serving" / "1")]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("\n") == 1, err
    assert not (tmp_path / "serving").exists()


@pytest.mark.parametrize("shape", [(150, 150, 3), (1, 150, 150, 1), (1, 150, 150, 4), ()])
def test_tensor_signature_names_the_expected_shape(loaded, shape):
    serve = loaded.saved_model.signatures[TENSOR_SIGNATURE]
    expected = re.escape("expected uint8 [B, H, W, 3] (a batch of RGB images), got shape] [")
    with pytest.raises(tf.errors.InvalidArgumentError, match=expected + re.escape(" ".join(map(str, shape)))):
        serve(images=tf.zeros(shape, tf.uint8))


def test_an_empty_batch_gives_empty_outputs_on_every_tensor_path(exported, loaded):
    empty = np.zeros((0, 150, 150, 3), np.uint8)
    detections = exported["config"].max_detections
    shapes = {
        "num_detections": (0,), "detection_boxes": (0, detections, 4),
        "detection_scores": (0, detections), "detection_classes": (0, detections),
    }
    for name in (TENSOR_SIGNATURE, ALL_DETECTIONS_SIGNATURE):
        outputs = loaded.saved_model.signatures[name](images=tf.constant(empty))
        assert {key: tuple(value.shape) for key, value in outputs.items()} == shapes, name
    internal = {"num_detections": (0,), "boxes": (0, detections, 4), "scores": (0, detections), "classes": (0, detections)}
    for detect in (loaded, Detector.from_model(exported["model"]).detect):
        assert {key: tuple(np.shape(value)) for key, value in detect(empty).items()} == internal


def test_every_path_returns_the_same_boxes_after_class_agnostic_suppression_voting_and_shared_sides(exported, loaded):
    model, crops = exported["model"], exported["crops"]
    expected = _expected(model, crops, normalised=False)
    _assert_outputs_equal(Detector.from_model(model).detect(crops), expected)
    _assert_outputs_equal(loaded(crops), expected)
    # The compared outputs went through the class-agnostic stage: without it there are more boxes.
    assert model.detector_config.agnostic_nms_iou is not None
    per_class_only = _expected(with_postprocess(model, agnostic_nms_iou=None), crops, normalised=False)
    assert np.all(per_class_only["num_detections"] >= expected["num_detections"])
    assert np.any(per_class_only["num_detections"] > expected["num_detections"])
    # ... and box voting: without it the same detections keep other boxes.
    assert model.detector_config.box_voting_iou is not None
    unvoted = _expected(with_postprocess(model, box_voting_iou=None), crops, normalised=False)
    np.testing.assert_array_equal(unvoted["scores"], expected["scores"])
    # An untrained model's overlapping boxes nearly agree: voting moves them by about 0.002 px, far
    # above the float noise of two copies of one model (their scores are equal).
    assert np.abs(unvoted["boxes"] - expected["boxes"]).max() > 5e-4
    # ... and shared box sides.
    assert model.detector_config.side_sharing
    unshared = _expected(with_postprocess(model, side_sharing=None), crops, normalised=False)
    np.testing.assert_array_equal(unshared["scores"], expected["scores"])
    assert np.abs(unshared["boxes"] - expected["boxes"]).max() > 1e-3


def _at_least(outputs: dict[str, np.ndarray], threshold: float, *, normalised: bool) -> dict[str, np.ndarray]:
    """`_expected` outputs cut to the detections scoring >= threshold (they lead each image)."""
    scores_key = "detection_scores" if normalised else "scores"
    slots = np.arange(outputs[scores_key].shape[1])[None]
    kept = (slots < outputs["num_detections"][:, None]) & (outputs[scores_key] >= threshold)
    return {
        key: value if key == "num_detections" else np.where(kept[..., None] if value.ndim == 3 else kept, value, 0)
        for key, value in {**outputs, "num_detections": kept.sum(axis=1).astype(outputs["num_detections"].dtype)}.items()
    }


def test_export_serves_at_the_runs_operating_threshold_by_default(exported, tmp_path):
    model, crops = exported["model"], exported["crops"]
    every = _expected(model, crops, normalised=False)
    scores = np.unique(every["scores"][0, : every["num_detections"][0]])
    assert len(scores) >= 2
    # Between two detections' scores, and a float32 value so the graph and numpy compare alike.
    threshold = float(np.float32((scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model.keras").write_bytes((exported["run_dir"] / "model.keras").read_bytes())
    (run_dir / "config.json").write_text(json.dumps({"dataset": "clump_scout/synthetic"}))
    (run_dir / "validation.json").write_text(json.dumps({"operating_point": {"threshold": threshold}}))
    version = tmp_path / "serving" / "1"
    assert cli.main(["export", "--model", str(run_dir), "--out", str(version)]) == 0
    metadata = json.loads((version / METADATA_PATH).read_text())
    assert metadata["score_threshold"] == metadata["operating_threshold"] == threshold
    # A TF Serving client gets the catalogue's detections, the library every detection.
    saved_model = load_exported(version).saved_model
    served = saved_model.signatures[TENSOR_SIGNATURE](images=tf.constant(crops))
    expected = _at_least(_expected(model, crops, normalised=True), threshold, normalised=True)
    _assert_outputs_equal({key: served[key] for key in OUTPUT_KEYS}, expected)
    assert 0 < served["num_detections"].numpy()[0] < every["num_detections"][0]
    all_detections = saved_model.signatures[ALL_DETECTIONS_SIGNATURE](images=tf.constant(crops))
    _assert_outputs_equal({key: all_detections[key] for key in OUTPUT_KEYS}, _expected(model, crops, normalised=True))
    _assert_outputs_equal(load_exported(version)(crops), every)
    # Keras path and export agree at the same threshold; both default to it in predict.
    exported_detector, trained_detector = load_detector(version), load_detector(run_dir)
    assert default_min_score(exported_detector) == default_min_score(trained_detector) == threshold
    keras_at_threshold = _at_least(trained_detector.detect(crops), threshold, normalised=False)
    _assert_outputs_equal(keras_at_threshold, _at_least(exported_detector.detect(crops), threshold, normalised=False))


def test_export_without_operating_threshold_serves_the_default_min_score_as_predict_uses(exported, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model.keras").write_bytes((exported["run_dir"] / "model.keras").read_bytes())
    (run_dir / "config.json").write_text(json.dumps({"dataset": "clump_scout/synthetic"}))
    version = tmp_path / "serving" / "1"
    assert cli.main(["export", "--model", str(run_dir), "--out", str(version)]) == 0
    metadata = json.loads((version / METADATA_PATH).read_text())
    assert metadata["operating_threshold"] is None and metadata["score_threshold"] == DEFAULT_MIN_SCORE
    # The same minimum score from the run, from its export and in the export's thresholded signature.
    trained_detector, exported_detector = load_detector(run_dir), load_detector(version)
    assert trained_detector.run_dir == run_dir
    assert default_min_score(trained_detector) == default_min_score(exported_detector) == DEFAULT_MIN_SCORE
    signatures = load_exported(version).saved_model.signatures
    crops = tf.constant(exported["crops"])
    every = _expected(exported["model"], exported["crops"], normalised=True)
    all_detections = signatures[ALL_DETECTIONS_SIGNATURE](images=crops)
    _assert_outputs_equal({key: all_detections[key] for key in OUTPUT_KEYS}, every)
    valid = np.arange(every["detection_scores"].shape[1])[None] < every["num_detections"][:, None]
    assert np.any(valid & (every["detection_scores"] < DEFAULT_MIN_SCORE)), "all_detections returns some below it"
    served = signatures[TENSOR_SIGNATURE](images=crops)
    expected = _at_least(every, DEFAULT_MIN_SCORE, normalised=True)
    _assert_outputs_equal({key: served[key] for key in OUTPUT_KEYS}, expected)


def test_tta_export_needs_a_threshold_chosen_under_tta(exported, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model.keras").write_bytes((exported["run_dir"] / "model.keras").read_bytes())
    # Chosen without TTA: it does not count.
    (run_dir / "validation.json").write_text(json.dumps({"operating_point": {"threshold": 0.42}}))
    assert cli.main(["export", "--model", str(run_dir), "--out", str(tmp_path / "serving" / "1"), "--tta"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert re.search(
        r"no operating threshold chosen under TTA; choose one with `gsfc-tf evaluate --tta --split validation` "
        r"and pass it with --min-score\.$", err.strip()
    ), err
    assert not (tmp_path / "serving").exists()


def test_tta_export_matches_the_keras_tta_path(exported, tmp_path):
    # Containment on as well, set on the trained model without retraining.
    model = with_postprocess(exported["model"], containment_threshold=0.8)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    model.save(run_dir / "model.keras")
    # Chosen without TTA, so the TTA export must not carry it; --min-score gives one chosen under TTA.
    (run_dir / "validation.json").write_text(json.dumps({"operating_point": {"threshold": 0.42}}))
    version = tmp_path / "serving" / "1"
    export = ["export", "--model", str(run_dir), "--out", str(version), "--tta", "--tta-merge", "nms"]
    assert cli.main([*export, "--min-score", "0.3"]) == 0
    metadata = json.loads((version / METADATA_PATH).read_text())
    assert metadata["tta"] == "nms" and metadata["operating_threshold"] == metadata["score_threshold"] == 0.3
    assert load_detector(version).tta and default_min_score(load_detector(version)) == 0.3
    keras_tta = load_detector(run_dir, tta=True, tta_merge="nms")
    assert keras_tta.detect(exported["crops"])["num_detections"].min() > 0
    _assert_outputs_equal(load_exported(version)(exported["crops"]), keras_tta.detect(exported["crops"]))
    with pytest.raises(ValueError, match="export the model with --tta instead"):
        load_detector(version, tta=True)


def test_postprocess_settings_change_without_retraining_and_old_models_load(exported):
    model = exported["model"]
    changed = with_postprocess(model, agnostic_nms_iou=0.3, containment_threshold=0.7)
    assert (changed.detector_config.agnostic_nms_iou, changed.postprocess.containment_threshold) == (0.3, 0.7)
    assert model.detector_config == exported["config"], "the original is unchanged"
    for a, b in zip(model.get_weights(), changed.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="with_postprocess changes only .*; got image_size"):
        with_postprocess(model, image_size=64)
    with pytest.raises(ValueError, match=r"containment_threshold must be in \(0, 1\]"):
        with_postprocess(model, containment_threshold=0.0)
    # A model or run config saved before the class-agnostic stage, box voting and shared sides existed takes the defaults.
    added = ("agnostic_nms_iou", "containment_threshold", "box_voting_iou", "side_sharing")
    old = model.get_config()
    old["config"] = {k: v for k, v in old["config"].items() if k not in added}
    assert FasterRCNN.from_config(old).detector_config == exported["config"]
    run_config = dataclasses.asdict(TrainConfig(detector=exported["config"]))
    for key in added:
        del run_config["detector"][key]
    assert config_from_dict(run_config).detector == exported["config"]
