"""Multilevel anchor boxes from KerasCV's `AnchorGenerator`.

Shape shorthand: L pyramid levels, Hl x Wl cells at level l, A anchors per cell.
"""

from __future__ import annotations

import numpy as np

__all__ = ["anchor_boxes"]


def anchor_boxes(
    image_size: int,
    *,
    sizes: tuple[float, ...],
    strides: tuple[int, ...],
    scales: tuple[float, ...] = (1.0,),
    aspect_ratios: tuple[float, ...] = (1.0,),
) -> list[np.ndarray]:
    """Anchors for each pyramid level of a square image.

    Anchor centres sit at cell centres `(i + 0.5) * stride`, ordered (row, column, anchor) to
    match an `[B, Hl, Wl, A]` head output flattened row-major.

    Args:
        image_size: side S of the square input image in pixels.
        sizes: base anchor side per level (L values).
        strides: feature stride per level (L values).
        scales: multipliers of the base size (A = len(scales) * len(aspect_ratios)).
        aspect_ratios: width / height ratios.

    Returns:
        L float32 arrays `[Hl * Wl * A, 4]` in `yxyx` pixels.
    """
    # Imported here: keras_cv imports tensorflow_datasets, which importing gsfc_tf.trainer or
    # gsfc_tf.data must not load.
    import keras_cv

    if len(sizes) != len(strides):
        raise ValueError(f"Need one anchor size per stride, got sizes={sizes} and strides={strides}.")
    generator = keras_cv.layers.AnchorGenerator(
        bounding_box_format="yxyx",
        sizes=list(sizes),
        scales=list(scales),
        aspect_ratios=list(aspect_ratios),
        strides=list(strides),
        # Not the global policy: mixed_bfloat16 rounds corners by up to 2 px at 424 px.
        dtype="float32",
    )
    per_level = generator(image_shape=(image_size, image_size, 3))
    return [np.asarray(per_level[key], np.float32) for key in sorted(per_level)]
