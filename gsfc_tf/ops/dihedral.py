"""The 8 flips and 90° rotations of a square image (the dihedral group D4), for images and boxes.

Shape shorthand: B images, S square image side, N boxes. Transform `draw` in [0, 8) is
`draw // 2` counter-clockwise quarter turns (`tf.image.rot90`), then a left-right flip if
`draw` is odd. Training augmentation (`data.augment_dihedral`) and test-time augmentation
(`gsfc_tf.tta`) both use these maps, so one set of formulas moves pixels and boxes.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["NUM_DIHEDRAL", "transform_boxes", "transform_images"]

NUM_DIHEDRAL = 8


def _dihedral_maps(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The 8 maps p -> A p + b of pixel points (y, x) in an S x S image.

    Matches `tf.image.rot90` (counter-clockwise: (y, x) -> (S - x, y)) and `flip_left_right`.

    Returns:
        (matrices A float32 [8, 2, 2], offsets b float32 [8, 2]).
    """
    turn, turn_offset = np.array([[0.0, -1.0], [1.0, 0.0]]), np.array([size, 0.0])
    flip, flip_offset = np.array([[1.0, 0.0], [0.0, -1.0]]), np.array([0.0, size])
    matrices, offsets = [], []
    for draw in range(NUM_DIHEDRAL):
        matrix, offset = np.eye(2), np.zeros(2)
        for _ in range(draw // 2):
            matrix, offset = turn @ matrix, turn @ offset + turn_offset
        if draw % 2:
            matrix, offset = flip @ matrix, flip @ offset + flip_offset
        matrices.append(matrix)
        offsets.append(offset)
    return np.array(matrices, np.float32), np.array(offsets, np.float32)


def transform_images(images: tf.Tensor, draw) -> tf.Tensor:
    """Applies transform `draw` to images.

    Args:
        images: [S, S, C] or [B, S, S, C].
        draw: int or int32 scalar tensor in [0, 8).

    Returns:
        The transformed images, same shape.
    """
    turned = tf.image.rot90(images, k=draw // 2)
    return tf.cond(tf.equal(draw % 2, 1), lambda: tf.image.flip_left_right(turned), lambda: turned)


def transform_boxes(boxes_yxyx: tf.Tensor, draw, *, size: int, inverse: bool = False) -> tf.Tensor:
    """Moves boxes with `transform_images(image, draw)` of an S x S image, or back with `inverse`.

    Args:
        boxes_yxyx: float32 [..., 4] pixels.
        draw: int or int32 scalar tensor in [0, 8).
        size: S.
        inverse: map boxes of the transformed image back to the original image.

    Returns:
        float32 [..., 4] yxyx pixels in the other frame.
    """
    matrices, offsets = _dihedral_maps(size)
    matrix, offset = tf.gather(matrices, draw), tf.gather(offsets, draw)
    corners = tf.reshape(tf.cast(boxes_yxyx, tf.float32), tf.concat([tf.shape(boxes_yxyx)[:-1], [2, 2]], 0))
    if inverse:
        # A is orthogonal (a signed permutation): A^-1 = A^T.
        moved = tf.einsum("ji,...cj->...ci", matrix, corners - offset)
    else:
        moved = tf.einsum("ij,...cj->...ci", matrix, corners) + offset
    return tf.concat([tf.reduce_min(moved, axis=-2), tf.reduce_max(moved, axis=-2)], axis=-1)
