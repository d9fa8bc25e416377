"""Backbone contract: C1..C5 shapes, input checks, preprocessing, serialization and freezing."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from gsfc_tf.backbones import BACKBONES, build_backbone
from gsfc_tf.backbones.resnet import CaffePreprocessing

_LEVELS = ("C1", "C2", "C3", "C4", "C5")
_CHANNELS = {
    "tiny": (16, 24, 32, 48, 64),
    "zoobot_efficientnet_b0": (16, 24, 40, 112, 320),
    "zoobot_resnet50": (64, 256, 512, 1024, 2048),
    "resnet50": (64, 256, 512, 1024, 2048),
}


@pytest.mark.parametrize("name", sorted(set(BACKBONES) - {"tiny"}))
@pytest.mark.parametrize("size", [64, 67])
def test_feature_shapes(name, size):
    model = build_backbone(name, input_shape=(None, None, 3))
    features = model(np.zeros((1, size, size, 3), np.float32))
    assert sorted(features) == list(_LEVELS)
    for level, channels in zip(_LEVELS, _CHANNELS[name], strict=True):
        side = -(-size // 2 ** int(level[1]))  # stride 2**k, rounded up like PyTorch
        assert tuple(features[level].shape) == (1, side, side, channels), level


def test_one_channel_input():
    model = build_backbone("zoobot_efficientnet_b0", input_shape=(32, 32, 1))
    assert tuple(model.get_layer("conv_stem").kernel.shape) == (3, 3, 1, 32)
    assert tuple(model(np.zeros((2, 32, 32, 1), np.float32))["C5"].shape) == (2, 1, 1, 320)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="Unknown backbone 'vgg'"):
        build_backbone("vgg")
    with pytest.raises(ValueError, match=r"\(32, 32, 2\)"):
        build_backbone("zoobot_efficientnet_b0", input_shape=(32, 32, 2))
    with pytest.raises(ValueError, match=r"RGB.*\(32, 32, 1\)"):
        build_backbone("resnet50", input_shape=(32, 32, 1))
    with pytest.raises(ValueError, match="trainable_layers must be in 0..5, got 6"):
        build_backbone("zoobot_efficientnet_b0", trainable_layers=6)


def test_caffe_preprocessing_matches_keras_applications():
    images = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
    expected = keras.applications.resnet50.preprocess_input(images * 255.0)
    layer = CaffePreprocessing.from_config(CaffePreprocessing().get_config())
    np.testing.assert_allclose(np.asarray(layer(images)), expected, atol=1e-4)


def test_saved_model_round_trip(tmp_path):
    model = build_backbone("zoobot_efficientnet_b0", input_shape=(32, 32, 3))
    images = np.random.default_rng(1).random((1, 32, 32, 3), dtype=np.float32)
    model.save(tmp_path / "b0.keras")
    restored = keras.saving.load_model(tmp_path / "b0.keras")
    for level in _LEVELS:
        np.testing.assert_allclose(np.asarray(restored(images)[level]), np.asarray(model(images)[level]), atol=1e-6)


@functools.cache
def _layer_stages(name: str, size: int) -> dict[str, int]:
    """Stage of every weighted layer, found from the graph: the first C-level that depends on it."""
    model = build_backbone(name, input_shape=(size, size, 3))
    images = np.random.default_rng(2).random((1, size, size, 3), dtype=np.float32)
    stages = {}
    with tf.GradientTape(persistent=True) as tape:
        features = model(images, training=False)
    weighted = [layer for layer in model.layers if layer.weights]
    for stage, level in enumerate(_LEVELS, start=1):
        gradients = tape.gradient(features[level], [layer.trainable_weights[0] for layer in weighted])
        for layer, gradient in zip(weighted, gradients):
            if gradient is not None:
                stages.setdefault(layer.name, stage)
    assert len(stages) == len(weighted)
    return stages


@pytest.mark.parametrize("name", ["zoobot_efficientnet_b0", "zoobot_resnet50", "resnet50"])
def test_trainable_layers_follow_c_levels(name):
    stages = _layer_stages(name, 32)
    for trainable_layers in range(1, 5):  # 0 and 5 have no boundary to misplace
        model = build_backbone(name, input_shape=(32, 32, 3), trainable_layers=trainable_layers)
        flags = {layer.name: layer.trainable for layer in model.layers if layer.weights}
        assert flags == {layer: stage > 5 - trainable_layers for layer, stage in stages.items()}, trainable_layers


@pytest.mark.parametrize(
    ("name", "trainable_layers"),
    [("zoobot_efficientnet_b0", 0), ("zoobot_efficientnet_b0", 2), ("resnet50", 3)],
)
def test_fit_step_changes_exactly_the_trainable_stages(name, trainable_layers):
    size = 32
    stages = _layer_stages(name, size)
    backbone = build_backbone(name, input_shape=(size, size, 3), trainable_layers=trainable_layers)
    pooled = [keras.layers.GlobalAveragePooling2D()(backbone.output[level]) for level in _LEVELS]
    score = keras.layers.Dense(1)(keras.layers.Concatenate()(pooled))
    model = keras.Model(backbone.input, score)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = {layer.name: [np.array(w) for w in layer.weights] for layer in backbone.layers if layer.weights}
    rng = np.random.default_rng(3)
    model.fit(rng.random((4, size, size, 3), dtype=np.float32), rng.normal(size=(4, 1)), batch_size=4, verbose=0)

    first_trainable = 6 - trainable_layers
    for layer_name, old in before.items():
        changed = [not np.array_equal(a, np.array(w)) for a, w in zip(old, backbone.get_layer(layer_name).weights)]
        if stages[layer_name] >= first_trainable:
            assert all(changed), f"{layer_name} (stage {stages[layer_name]}) should train: {changed}"
        else:
            assert not any(changed), f"{layer_name} (stage {stages[layer_name]}) should be frozen: {changed}"
    if trainable_layers == 0:
        assert not backbone.trainable_weights
