"""Backbones: Keras models mapping float images in [0, 1] to feature maps `C1`..`C5`.

Every backbone returns a dict `{"C1": ..., "C5": ...}` with strides 2, 4, 8, 16 and 32.
"""

from __future__ import annotations

import keras

from gsfc_tf.backbones.tiny import build_tiny

__all__ = ["BACKBONES", "build_backbone"]

BACKBONES = {
    "tiny": build_tiny,
}


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
        weights: path to a `.weights.h5` file, or None for random initialisation.
        input_shape: `(H, W, C)` of the float input images in [0, 1].
        trainable_layers: None trains everything; 0 freezes the whole backbone (BN in
            inference mode); N trains only the last N stages.

    Returns:
        A `keras.Model` whose output is a dict of feature maps `C1`..`C5`.
    """
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; choose one of {sorted(BACKBONES)}.")
    return BACKBONES[name](weights=weights, input_shape=input_shape, trainable_layers=trainable_layers)
