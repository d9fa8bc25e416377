"""Feature pyramid network (Lin et al. 2017) over backbone maps C2..C5.

Shape shorthand: B images, Hl x Wl cells at level l (ceil(S / 2**l) for "same" padding),
C_l backbone channels, F pyramid channels.
"""

from __future__ import annotations

import keras

__all__ = ["FeaturePyramid"]


@keras.saving.register_keras_serializable(package="gsfc_tf")
class FeaturePyramid(keras.layers.Layer):
    """Lateral 1x1 convs, nearest top-down upsampling and 3x3 output convs.

    Args:
        channels: F.
        min_level / max_level: pyramid levels taken from `C{min_level}`..`C{max_level}`.

    Call args:
        features: dict with `C{l}` float32 [B, Hl, Wl, C_l] for every level.

    Returns:
        list of float32 [B, Hl, Wl, F], finest level first.
    """

    def __init__(self, channels: int = 256, *, min_level: int = 2, max_level: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.min_level = min_level
        self.max_level = max_level
        levels = range(min_level, max_level + 1)
        self.lateral = [keras.layers.Conv2D(channels, 1, name=f"lateral_p{lvl}") for lvl in levels]
        self.output_convs = [keras.layers.Conv2D(channels, 3, padding="same", name=f"output_p{lvl}") for lvl in levels]

    def build(self, input_shape):
        for level, lateral, output_conv in zip(range(self.min_level, self.max_level + 1), self.lateral, self.output_convs):
            shape = input_shape[f"C{level}"]
            lateral.build(shape)
            output_conv.build(tuple(shape[:-1]) + (self.channels,))

    def call(self, features):
        missing = [f"C{lvl}" for lvl in range(self.min_level, self.max_level + 1) if f"C{lvl}" not in features]
        if missing:
            raise ValueError(f"FeaturePyramid needs {missing}; got keys {sorted(features)}.")
        laterals = [conv(features[f"C{lvl}"]) for lvl, conv in zip(range(self.min_level, self.max_level + 1), self.lateral)]
        merged = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):
            up = keras.ops.repeat(keras.ops.repeat(merged[0], 2, axis=1), 2, axis=2)
            # With odd sizes ("same" padding, ceil) the upsampled map is one cell too big; cell i of
            # the coarse map covers cells 2i, 2i+1 of the fine one, so crop the far edge.
            merged.insert(0, lateral + up[:, : lateral.shape[1], : lateral.shape[2]])
        return [conv(x) for conv, x in zip(self.output_convs, merged)]

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "min_level": self.min_level, "max_level": self.max_level}
