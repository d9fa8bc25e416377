"""A small plain CNN backbone for smoke runs and fast tests (no pretrained weights exist)."""

from __future__ import annotations

import keras

from gsfc_tf.backbones import set_trainable_stages

__all__ = ["build_tiny"]

_TINY_CHANNELS = (16, 24, 32, 48, 64)


def build_tiny(*, weights=None, input_shape=(None, None, 3), trainable_layers=None) -> keras.Model:
    """Five stride-2 stages of conv-BN-ReLU pairs; outputs `C1`..`C5`."""
    images = keras.Input(shape=input_shape, name="images")
    x = images
    features = {}
    for level, channels in enumerate(_TINY_CHANNELS, start=1):
        x = keras.layers.Conv2D(channels, 3, strides=2, padding="same", use_bias=False, name=f"stage{level}_down")(x)
        x = keras.layers.BatchNormalization(name=f"stage{level}_down_bn")(x)
        x = keras.layers.ReLU(name=f"stage{level}_down_relu")(x)
        x = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"stage{level}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"stage{level}_bn")(x)
        x = keras.layers.ReLU(name=f"stage{level}_relu")(x)
        features[f"C{level}"] = x
    model = keras.Model(images, features, name="tiny_backbone")
    if weights is not None:
        model.load_weights(weights)
    set_trainable_stages(model, [(f"stage{level}_",) for level in range(1, len(_TINY_CHANNELS) + 1)], trainable_layers)
    return model
