"""Keras wrapper of the multilevel ROI align op.

Shape shorthand: B images, R boxes per image, P bins per side, F pyramid channels.
"""

from __future__ import annotations

import keras

from gsfc_tf.ops.roi_align import multilevel_roi_align

__all__ = ["MultiLevelRoiAlign"]


@keras.saving.register_keras_serializable(package="gsfc_tf")
class MultiLevelRoiAlign(keras.layers.Layer):
    """Pools each box from the pyramid level matching its size (`aligned=True` semantics).

    Box coordinates and sampling grids are float32 whatever the global dtype policy (the
    layer's policy defaults to float32), so mixed-precision features are cast to float32 here.

    Call args:
        features: list of [B, Hl, Wl, F], level `min_level` first.
        boxes_yxyx: float32 [B, R, 4] in image pixels.

    Returns:
        float32 [B, R, P, P, F].
    """

    def __init__(
        self,
        *,
        output_size: int = 7,
        sampling_ratio: int = 2,
        min_level: int = 2,
        canonical_size: float = 112.0,
        canonical_level: int = 4,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.output_size = output_size
        self.sampling_ratio = sampling_ratio
        self.min_level = min_level
        self.canonical_size = canonical_size
        self.canonical_level = canonical_level

    def call(self, features, boxes_yxyx):
        return multilevel_roi_align(
            list(features),
            boxes_yxyx,
            min_level=self.min_level,
            output_size=self.output_size,
            canonical_size=self.canonical_size,
            canonical_level=self.canonical_level,
            sampling_ratio=self.sampling_ratio,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "output_size": self.output_size,
            "sampling_ratio": self.sampling_ratio,
            "min_level": self.min_level,
            "canonical_size": self.canonical_size,
            "canonical_level": self.canonical_level,
        }
