"""DatasetBuilderTestCase for both `clump_scout` configs, plus the bad-input behaviours."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_clumpscout.clump_scout import clump_scout_dataset_builder as builder_module
from tfds_clumpscout.clump_scout import preparation

DUMMY = builder_module.Builder.code_path.parent / "dummy_data"


class SdssTest(tfds.testing.DatasetBuilderTestCase):
    """Both catalogue forms, a FITS cutout, an RGBA PNG, a corrupt PNG, a missing image."""

    DATASET_CLASS = builder_module.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["sdss"]
    # 11 galaxies keep boxes: 7 with more clumps -> 5/1/1, 4 with more odd -> 3/1/0.
    SPLITS = {"train": 8, "validation": 2, "test": 1}


class SyntheticTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = builder_module.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = [
        builder_module.ClumpScoutConfig(
            name="synthetic_tiny", source="synthetic", num_train=3, num_validation=2, num_test=2
        )
    ]
    SPLITS = {"train": 3, "validation": 2, "test": 2}


def _build(tmp_path, config, manual_dir=None):
    builder = builder_module.Builder(config=config, data_dir=tmp_path / "data")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir and str(manual_dir))
    )
    return builder


@pytest.fixture(scope="module")
def sdss_dummy(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("sdss"), "sdss", DUMMY)


def test_report_accounts_for_every_row(sdss_dummy):
    report = sdss_dummy.load_preparation_report()
    n_rows = sum(len(p.read_text().splitlines()) - 1 for p in DUMMY.glob("*.csv"))
    assert len(report.rows) == n_rows == sum(report.counts.values())
    assert report.counts == {
        "kept": 15,
        "bad_id": 1,
        "bad_label": 2,
        "bad_coordinates": 2,
        "outside_crop": 1,
        "bulge": 3,
        "edge": 2,
        "missing_image": 1,
        "unreadable_image": 2,
    }
    status = {r["row"]: r["status"] for r in report.rows}
    assert status["boxes_crop.csv:18"] == "missing_image"  # 100000000090, no file
    assert status["boxes_crop.csv:19"] == "unreadable_image"  # corrupt PNG
    assert status["boxes_crop.csv:20"] == "unreadable_image"  # 300x300 PNG
    assert json.loads(sdss_dummy.preparation_report_path.read_text())["num_rows"] == n_rows


def test_sdss_examples_match_catalogue(sdss_dummy):
    examples = {
        ex["image/id"].decode(): ex
        for split in ("train", "validation", "test")
        for ex in tfds.as_numpy(sdss_dummy.as_dataset(split=split))
    }
    report = sdss_dummy.load_preparation_report()
    assert set(examples) == {r["local_id"] for r in report.rows if r["status"] == "kept"}
    # Crop form, crop pixels (x 60..76, y 70..86), label 1 -> clump.
    first = examples["100000000001"]
    np.testing.assert_allclose(first["objects"]["bbox"][0], np.array([70, 60, 86, 76]) / 200, atol=1e-6)
    np.testing.assert_array_equal(first["objects"]["label"], [0, 1])
    # Consensus form, 400 px: x 150..166 -> crop 50..66; mean_tool 0.6 -> odd; metadata kept.
    eight = examples["100000000008"]
    np.testing.assert_allclose(eight["objects"]["bbox"][0], np.array([70, 50, 86, 66]) / 200, atol=1e-6)
    np.testing.assert_array_equal(eight["objects"]["label"], [0, 1])
    assert eight["ra"] == pytest.approx(150.25) and eight["redshift"] == pytest.approx(0.08)
    np.testing.assert_array_equal(examples["100000000009"]["objects"]["label"], [1])  # improbable
    assert np.isnan(examples["100000000001"]["ra"])
    # The FITS cube becomes a non-blank RGB crop; the RGBA PNG loses its alpha.
    assert examples["100000000010"]["image"].shape == (200, 200, 3)
    assert examples["100000000010"]["image"].max() > 0
    assert examples["100000000004"]["image"].shape == (200, 200, 3)


def test_synthetic_splits_do_not_overlap(tmp_path):
    config = builder_module.ClumpScoutConfig(
        name="synthetic_tiny", source="synthetic", num_train=2, num_validation=2, num_test=1
    )
    builder = _build(tmp_path, config)
    images = {
        split: [ex["image"] for ex in tfds.as_numpy(builder.as_dataset(split=split))]
        for split in ("train", "validation", "test")
    }
    flat = [img.tobytes() for imgs in images.values() for img in imgs]
    assert len(flat) == 5 and len(set(flat)) == 5


def test_empty_manual_dir_gives_tfds_manual_download_error(tmp_path):
    empty = tmp_path / "manual"
    empty.mkdir()
    with pytest.raises(AssertionError, match="does not exist or is empty"):
        _build(tmp_path, "sdss", empty)


def test_manual_dir_without_catalogue_raises(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    shutil.copy(DUMMY / "100000000001.png", manual)
    with pytest.raises(FileNotFoundError, match="No catalogue CSV"):
        _build(tmp_path, "sdss", manual)


def test_catalogue_missing_columns_raises(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "boxes.csv").write_text("local_ids,x1,x2,y1\n1,2,3,4\n")
    with pytest.raises(ValueError, match=r"boxes.csv: .*lacks \[.label., .y2.\]"):
        _build(tmp_path, "sdss", manual)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="source"):
        builder_module.ClumpScoutConfig(name="x", source="hst")
    with pytest.raises(ValueError, match="split sizes"):
        builder_module.ClumpScoutConfig(name="x", source="synthetic", num_test=0)
    assert preparation.PreparationRules().crop_offset == 100


def test_tfds_build_command_line_builds_the_manual_config(tmp_path):
    command = [
        str(Path(sys.executable).with_name("tfds")), "build", "--imports", "tfds_clumpscout", "clump_scout/sdss",
        f"--manual_dir={DUMMY}", f"--data_dir={tmp_path}",
    ]
    repo = Path(builder_module.__file__).parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    built = builder_module.Builder(config="sdss", data_dir=tmp_path)
    assert {name: split.num_examples for name, split in built.info.splits.items()} == SdssTest.SPLITS
    assert (Path(built.data_dir) / "preparation_report.json").is_file()
