"""Backbones: Keras models mapping float images in [0, 1] to feature maps `C1`..`C5`.

Every backbone returns a dict `{"C1": ..., "C5": ...}` with strides 2, 4, 8, 16 and 32, and
takes images in [0, 1] directly: any normalisation a backbone's weights expect lives inside it.

| name                     | C1..C5 channels           | weights                                 |
|--------------------------|---------------------------|-----------------------------------------|
| `tiny`                   | 16, 24, 32, 48, 64        | random only (smoke runs, fast tests)    |
| `zoobot_efficientnet_b0` | 16, 24, 40, 112, 320      | `gsfc-tf zoobot-weights` output         |
| `zoobot_resnet50`        | 64, 256, 512, 1024, 2048  | `gsfc-tf zoobot-weights` output         |
| `resnet50`               | 64, 256, 512, 1024, 2048  | `"imagenet"` (downloads) or a file      |

Stages for `trainable_layers` follow the C-levels: stage k holds every layer up to and
including the one that outputs `Ck` (EfficientNet: C1 = stem + blocks[0], C2 = blocks[1],
C3 = blocks[2], C4 = blocks[3..4], C5 = blocks[5..6]; ResNet: conv1, then conv2_x..conv5_x).
`trainable_layers=N` trains the last N stages; frozen stages keep BatchNorm in inference mode.

This module imports no TensorFlow, so `gsfc-tf zoobot-weights` can load torch first; the
builders are imported when a backbone is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

__all__ = ["BACKBONES", "build_backbone", "set_trainable_stages"]

_BUILDERS = {
    "tiny": ("gsfc_tf.backbones.tiny", "build_tiny"),
    "zoobot_efficientnet_b0": ("gsfc_tf.backbones.efficientnet", "build_zoobot_efficientnet_b0"),
    "zoobot_resnet50": ("gsfc_tf.backbones.resnet", "build_zoobot_resnet50"),
    "resnet50": ("gsfc_tf.backbones.resnet", "build_resnet50"),
}
BACKBONES = tuple(_BUILDERS)


def build_backbone(
    name: str,
    *,
    weights: str | None = None,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    trainable_layers: int | None = None,
) -> keras.Model:
    """Builds backbone `name`.

    Args:
        name: one of `BACKBONES`.
        weights: path to a `.weights.h5` file, None for random initialisation, or
            `"imagenet"` for `resnet50` (downloads; 3 channels only).
        input_shape: `(H, W, C)` of the float input images in [0, 1]; C is 3, or 1 for the
            Zoobot backbones (greyscale encoders, or colour weights converted with `--channels 1`).
        trainable_layers: None trains everything; 0 freezes the whole backbone (BN in
            inference mode); N in 1..5 trains only the last N stages (see the module docstring).

    Returns:
        A `keras.Model` mapping `[B, H, W, C]` images to a dict of feature maps `C1`..`C5`.
    """
    if name not in _BUILDERS:
        raise ValueError(f"Unknown backbone {name!r}; choose one of {sorted(BACKBONES)}.")
    module_name, builder_name = _BUILDERS[name]
    builder = getattr(importlib.import_module(module_name), builder_name)
    return builder(weights=weights, input_shape=input_shape, trainable_layers=trainable_layers)


def set_trainable_stages(
    model: keras.Model, stage_prefixes: Sequence[Sequence[str]], trainable_layers: int | None
) -> None:
    """Freezes all but the last `trainable_layers` stages of `model`.

    Args:
        model: a backbone whose layer names start with one of the stage prefixes.
        stage_prefixes: for each of the 5 stages (C1 first), the layer-name prefixes it owns.
            Layers matching no prefix (inputs, preprocessing) have no weights and are skipped.
        trainable_layers: None leaves every layer trainable; otherwise 0..5.

    Raises:
        ValueError: if `trainable_layers` is outside 0..5.
    """
    if trainable_layers is None:
        return
    if not 0 <= trainable_layers <= len(stage_prefixes):
        raise ValueError(f"trainable_layers must be in 0..{len(stage_prefixes)}, got {trainable_layers}.")
    first_trainable = len(stage_prefixes) - trainable_layers
    for layer in model.layers:
        stage = next((i for i, prefixes in enumerate(stage_prefixes) if layer.name.startswith(tuple(prefixes))), None)
        if stage is None:
            if layer.weights:
                raise ValueError(f"Layer {layer.name!r} has weights but belongs to no stage of {model.name!r}.")
            continue
        # Keras 3 runs a non-trainable BatchNormalization in inference mode.
        layer.trainable = stage >= first_trainable
