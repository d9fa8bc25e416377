"""`data.load_tfds_split`: one-line errors for unknown datasets, and no stale `sdss` builds."""

import shutil

import pytest

from gsfc_tf import data
from tfds_clumpscout.clump_scout import clump_scout_dataset_builder as builder_module

DUMMY = builder_module.Builder.code_path.parent / "dummy_data"
CONFIGS = "clump_scout/sdss, clump_scout/synthetic, clump_scout/synthetic_small, clump_scout/synthetic_heldout"


@pytest.mark.parametrize(
    ("dataset", "reason"),
    [
        ("nope", "neither TFDS nor the data dir has it"),
        ("clump_scout/nope", "clump_scout has no config 'nope' and the data dir holds none"),
        ("clump_scout/sdss/extra/parts", "Parsing builder name string clump_scout/sdss/extra/parts failed."),
    ],
)
def test_unknown_dataset_is_one_line_naming_the_clump_scout_configs(tmp_path, dataset, reason):
    with pytest.raises(ValueError) as error:
        data.load_tfds_split(dataset, "train", data_dir=str(tmp_path))
    assert str(error.value) == f"Unknown dataset {dataset!r} ({reason}); the clump_scout configs are {CONFIGS}."


def test_a_prepared_sdss_is_reused_only_with_the_files_it_was_built_from(tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(DUMMY, manual)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    load = lambda: data.load_tfds_split("clump_scout/sdss", "test", data_dir=str(data_dir), manual_dir=str(manual))
    assert len(list(load())) == 1
    assert len(list(load())) == 1  # same files: the build is reused
    # Without a manual dir the prepared build is what there is.
    assert len(list(data.load_tfds_split("clump_scout/sdss", "test", data_dir=str(data_dir)))) == 1

    with (manual / "consensus.csv").open("a") as f:
        f.write("100000000011,250,266,230,246,0.1,0.1,,,\n")
    (manual / "100000000001.png").unlink()
    with pytest.raises(ValueError) as error:
        load()
    message = str(error.value)
    assert len(message.splitlines()) == 1
    assert f"was built from other files than manual dir {manual}" in message
    assert "1 catalogue changed (consensus.csv); 1 cutout removed (100000000001.png)" in message
    assert f"delete {data_dir / 'clump_scout' / 'sdss'} or use another data dir" in message

    shutil.rmtree(data_dir / "clump_scout" / "sdss")
    assert len(list(load())) == 1  # rebuilt from the new files
