"""TFDS datasets of gsfc-tf; importing this registers `clump_scout`.

    import tfds_clumpscout  # noqa: F401
    import tensorflow_datasets as tfds
    ds = tfds.load("clump_scout/synthetic", split="train")

or ``tfds build --imports tfds_clumpscout clump_scout/synthetic``.
"""

from tfds_clumpscout.clump_scout import Builder as ClumpScout

__all__ = ["ClumpScout"]
