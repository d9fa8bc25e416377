"""`clump_scout` stores each clump's SNR and contrast: the generator's for synthetic, NaN for real."""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from tfds_clumpscout.clump_scout import clump_scout_dataset_builder as builder_module
from tfds_clumpscout.clump_scout import synthetic


def test_synthetic_examples_carry_the_generators_snr_and_contrast(tmp_path):
    config = builder_module.ClumpScoutConfig(
        name="synthetic_measures", source="synthetic", num_train=3, num_validation=1, num_test=1, synthetic_seed=2
    )
    builder = builder_module.Builder(config=config, data_dir=str(tmp_path))
    builder.download_and_prepare()
    examples = list(tfds.as_numpy(builder.as_dataset(split="train")))
    # The train split is drawn with seed 3 * synthetic_seed + 0.
    expected = {f"synthetic-6-{k:06d}": g for k, g in enumerate(synthetic.generate_galaxies(3, seed=6))}
    assert len(examples) == 3
    for example in examples:
        galaxy = expected[example["image/id"].decode()]
        objects = example["objects"]
        assert objects["snr"].dtype == np.float32 and objects["contrast"].dtype == np.float32
        np.testing.assert_array_equal(objects["snr"], galaxy.snr)
        np.testing.assert_array_equal(objects["contrast"], galaxy.contrast)
        # How each galaxy was rendered, text as text and numbers as float32 (NaN where not drawn).
        for name, value in dataclasses.asdict(galaxy.choices).items():
            stored = example["render"][name]
            if isinstance(value, str):
                assert stored.decode() == value, name
            else:
                np.testing.assert_array_equal(stored, np.float32(value), err_msg=name)


def test_real_galaxies_get_nan_measures():
    example = builder_module._example(
        "1", np.zeros((200, 200, 3), np.uint8), np.array([[10, 10, 30, 30], [50, 50, 60, 60]]), np.array([0, 1]),
        ra=np.nan, dec=np.nan, redshift=np.nan,
    )
    for name in ("snr", "contrast"):
        values = example["objects"][name]
        assert values.dtype == np.float32 and values.shape == (2,) and np.all(np.isnan(values))


def test_synthetic_small_is_a_prefix_of_synthetic_with_its_own_version():
    small = tfds.builder("clump_scout/synthetic_small")
    full = tfds.builder("clump_scout/synthetic")
    # Galaxy k of a split depends on the config's seed and k only, so equal seeds and smaller
    # splits make every synthetic_small galaxy a `synthetic` one (its test galaxies among synthetic's).
    assert small.builder_config.synthetic_seed == full.builder_config.synthetic_seed
    for split in ("train", "validation", "test"):
        assert getattr(small.builder_config, f"num_{split}") <= getattr(full.builder_config, f"num_{split}")
    # Both changed at 2.0.0 and `sdss` did not: a prepared `sdss` stays valid.
    sdss = tfds.builder("clump_scout/sdss")
    assert (str(small.version), str(full.version), str(sdss.version)) == ("2.0.0", "2.0.0", "1.4.0")
    assert "2.0.0" in small.release_notes and "2.0.0" in full.release_notes
    assert "render" not in sdss.info.features and "render" in full.info.features


def test_synthetic_heldout_is_a_test_split_of_other_renderers_and_seeds():
    heldout = tfds.builder("clump_scout/synthetic_heldout").builder_config
    assert heldout.family is synthetic.HELDOUT_FAMILY and heldout.num_test == 1000
    assert heldout.num_train == heldout.num_validation == 0
    # Split k is drawn with seed 3 * synthetic_seed + k: no seed of a training config's splits.
    training_seeds = {
        3 * config.synthetic_seed + k
        for config in builder_module.Builder.builder_configs.values()
        if config.source == "synthetic" and config.family is synthetic.TRAINING_FAMILY
        for k in range(3)
    }
    assert 3 * heldout.synthetic_seed + 2 not in training_seeds
