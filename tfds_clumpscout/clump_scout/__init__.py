"""The `clump_scout` TFDS dataset (builder, preparation rules, synthetic galaxies)."""

from tfds_clumpscout.clump_scout.clump_scout_dataset_builder import Builder, ClumpScoutConfig

__all__ = ["Builder", "ClumpScoutConfig"]
