"""Fixed-size random sampling of foreground / background rows.

Shape shorthand: B images, N candidates, R samples per image.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["sample_balanced"]


def sample_balanced(labels, noise, *, num_samples: int, positive_fraction: float):
    """Samples up to `num_samples` rows per image, at most `positive_fraction` of them positive.

    Like torchvision's `BalancedPositiveNegativeSampler`: missing positives are replaced by
    negatives; ignored rows are never taken. Static shapes: returns exactly R slots.

    Args:
        labels: int32 [B, N], 1 positive, 0 negative, -1 ignored.
        noise: float32 [B, N] uniform in [0, 1); the sampler is deterministic given it.
        num_samples: R.
        positive_fraction: cap on the positive share of R.

    Returns:
        `(indices, valid)`: int32 [B, R] row indices, positives first, and bool [B, R] marking
        slots that hold a sample (invalid slots point at arbitrary rows).
    """
    if labels.shape.rank != 2 or noise.shape.rank != 2:
        raise ValueError(f"`labels` and `noise` must be [B, N], got {labels.shape} and {noise.shape}.")
    num_candidates = labels.shape[1]
    if num_candidates is not None and num_candidates < num_samples:
        raise ValueError(f"Cannot sample {num_samples} rows from {num_candidates} candidates.")
    max_positive = int(num_samples * positive_fraction)
    positive = tf.equal(labels, 1)
    negative = tf.equal(labels, 0)
    num_positive = tf.minimum(tf.reduce_sum(tf.cast(positive, tf.int32), axis=1), max_positive)
    num_negative = tf.minimum(tf.reduce_sum(tf.cast(negative, tf.int32), axis=1), num_samples - num_positive)
    # Random keys put eligible rows first in a random order; top-k then takes a uniform subset.
    positive_idx = tf.math.top_k(tf.where(positive, noise, -1.0), k=max_positive).indices
    negative_idx = tf.math.top_k(tf.where(negative, noise, -1.0), k=num_samples).indices
    positive_valid = tf.range(max_positive)[tf.newaxis] < num_positive[:, tf.newaxis]
    negative_valid = tf.range(num_samples)[tf.newaxis] < num_negative[:, tf.newaxis]
    indices = tf.concat([positive_idx, negative_idx], axis=1)
    valid = tf.concat([positive_valid, negative_valid], axis=1)
    # Stable sort moves valid slots to the front, keeping positives before negatives.
    order = tf.argsort(tf.cast(tf.logical_not(valid), tf.int32), axis=1, stable=True)[:, :num_samples]
    return tf.gather(indices, order, batch_dims=1), tf.gather(valid, order, batch_dims=1)
