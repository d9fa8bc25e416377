"""End-to-end detector: losses, fit, predict, config and `.keras` round trip."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from gsfc_tf.config import DetectorConfig, smoke
from gsfc_tf.models import FasterRCNN, build_detector

CONFIG = smoke(image_size=64, rpn_post_nms_top_k_train=64, rpn_post_nms_top_k_test=48, roi_samples_per_image=32, max_clumps=4)


def _batch(with_clumps=True):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(2, 64, 64, 3)).astype(np.float32)
    boxes = -np.ones((2, 4, 4), np.float32)
    labels = -np.ones((2, 4), np.int32)
    if with_clumps:
        boxes[0, :2] = [[10, 10, 26, 26], [40, 30, 52, 42]]
        labels[0, :2] = [0, 1]
        boxes[1, :1] = [[5, 40, 15, 50]]
        labels[1, :1] = [1]
    return images, {"boxes_yxyx": boxes, "labels": labels}


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return build_detector(CONFIG)


def test_no_clumps_gives_zero_box_losses(model):
    images, targets = _batch(with_clumps=False)
    losses = {k: float(v) for k, v in model.compute_losses(images, targets).items()}
    assert losses["rpn_box"] == 0.0 and losses["roi_box"] == 0.0
    assert all(np.isfinite(v) for v in losses.values()) and losses["rpn_objectness"] > 0


def test_losses_with_clumps_are_positive(model):
    losses = model.compute_losses(*_batch())
    assert set(losses) == {"rpn_objectness", "rpn_box", "roi_class", "roi_box"}
    assert all(float(v) > 0 for v in losses.values())


def test_fit_predict_and_keras_round_trip(model, tmp_path):
    images, targets = _batch()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(images, targets, batch_size=2, epochs=2, verbose=0)
    assert set(history.history) == {"rpn_objectness", "rpn_box", "roi_class", "roi_box", "loss"}
    assert all(np.isfinite(v).all() for v in history.history.values())
    assert set(model.evaluate(images, targets, verbose=0, return_dict=True)) == set(history.history)

    predictions = model.predict(images, verbose=0)
    assert predictions["boxes"].shape == (2, CONFIG.max_detections, 4)
    assert predictions["scores"].shape == predictions["classes"].shape == (2, CONFIG.max_detections)
    assert predictions["num_detections"].shape == (2,)
    assert set(np.unique(predictions["classes"])) <= {0, 1}
    assert predictions["boxes"].min() >= 0 and predictions["boxes"].max() <= CONFIG.image_size

    path = tmp_path / "detector.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, FasterRCNN) and restored.detector_config == CONFIG
    assert restored.compiled and float(restored.optimizer.learning_rate) == pytest.approx(1e-3)
    assert restored.jit_compile == model.jit_compile
    assert int(restored.optimizer.iterations) == int(model.optimizer.iterations) > 0
    again = restored.predict(images, verbose=0)
    for key in predictions:
        np.testing.assert_allclose(again[key], predictions[key], atol=1e-5)


def test_mixed_bfloat16_builds_trains_and_predicts_in_float32(model, global_dtype_policy):
    images, targets = _batch()
    float32_outputs = model(images)
    global_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    mixed = build_detector(CONFIG)
    assert mixed.fpn.compute_dtype == mixed.box_head.compute_dtype == "bfloat16"
    assert {layer.compute_dtype for layer in (mixed.proposal_generator, mixed.roi_align, mixed.postprocess)} == {"float32"}
    losses, gradients = mixed.losses_and_gradients(images, targets, weight_decay=1e-4)
    assert set(losses) == {"rpn_objectness", "rpn_box", "roi_class", "roi_box", "loss"}
    assert all(v.dtype == tf.float32 and np.isfinite(v.numpy()) for v in losses.values())
    assert {v.dtype for v in mixed.trainable_variables} == {"float32"}
    assert [g.dtype for g in gradients] == [tf.float32] * len(mixed.trainable_variables)
    assert all(np.isfinite(g.numpy()).all() for g in gradients)
    outputs = mixed(images)
    assert {k: (v.dtype, v.shape) for k, v in outputs.items()} == {k: (v.dtype, v.shape) for k, v in float32_outputs.items()}
    assert outputs["boxes"].dtype == outputs["scores"].dtype == tf.float32


def test_config_round_trip_and_validation():
    model_config = {"name": "x", "config": {**CONFIG.__dict__, "anchor_sizes": list(CONFIG.anchor_sizes)}}
    assert FasterRCNN.from_config(model_config).detector_config == CONFIG
    with pytest.raises(ValueError, match="anchor sizes"):
        DetectorConfig(anchor_sizes=(8.0,))
    with pytest.raises(ValueError, match="proposal pool"):
        smoke(roi_samples_per_image=10_000)


def test_rejects_unpadded_targets(model):
    images, targets = _batch()
    with pytest.raises(ValueError, match="Expected boxes"):
        model.compute_losses(images, {"boxes_yxyx": targets["boxes_yxyx"][0], "labels": targets["labels"]})
