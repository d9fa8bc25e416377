"""DatasetBuilderTestCase for both `clump_scout` configs, plus the bad-input behaviours."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from tfds_clumpscout.clump_scout import clump_scout_dataset_builder as builder_module
from tfds_clumpscout.clump_scout import preparation, synthetic

DUMMY = builder_module.Builder.code_path.parent / "dummy_data"


class SdssTest(tfds.testing.DatasetBuilderTestCase):
    """Both catalogue forms (one with a BOM), duplicates, FITS, RGBA, 16-bit, JPEG in a subfolder,
    an upper-case suffix, a corrupt PNG, a missing image."""

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


class SyntheticHeldoutTest(tfds.testing.DatasetBuilderTestCase):
    """A test split only, as `synthetic_heldout` has."""

    DATASET_CLASS = builder_module.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = [
        builder_module.ClumpScoutConfig(
            name="synthetic_heldout_tiny", source="synthetic", num_train=0, num_validation=0, num_test=2,
            synthetic_seed=1000, family=synthetic.HELDOUT_FAMILY,
        )
    ]
    SPLITS = {"test": 2}


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
        "kept": 16,
        "bad_id": 1,
        "bad_label": 2,
        "bad_coordinates": 2,
        "outside_crop": 1,
        "bulge": 3,
        "edge": 2,
        "duplicate": 2,
        "missing_image": 1,
        "unreadable_image": 2,
    }
    status = {r["row"]: r["status"] for r in report.rows}
    assert status["boxes_crop.csv:3"] == "duplicate"  # line 2 again
    assert status["consensus.csv:11"] == "duplicate"  # boxes_crop.csv:5 in cutout pixels
    assert status["boxes_crop.csv:19"] == "missing_image"  # 100000000090, no file
    assert status["boxes_crop.csv:20"] == "unreadable_image"  # corrupt PNG
    assert status["boxes_crop.csv:21"] == "unreadable_image"  # 300x300 PNG
    # boxes_crop.csv has mean_tool/false_pos_prob too: its label column makes it the crop form.
    assert report.catalogues == {"boxes_crop.csv": "crop", "consensus.csv": "consensus"}
    assert report.fingerprint == preparation.fingerprint(DUMMY)
    assert "images/100000000011.jpg" in report.fingerprint["cutouts"]
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
    # One galaxy from both files: crop boxes plus the consensus box (230..246 -> 130..146), once each.
    np.testing.assert_allclose(
        examples["100000000002"]["objects"]["bbox"],
        np.array([[40, 40, 56, 56], [60, 150, 80, 170], [120, 130, 136, 146]]) / 200,
        atol=1e-6,
    )
    # 16-bit greyscale, JPEG in images/ and .PNG: pixels as the SavedModel's decoder gives them.
    for local_id, name in [
        ("100000000006", "100000000006.png"),
        ("100000000011", "images/100000000011.jpg"),
        ("100000000012", "100000000012.PNG"),
    ]:
        decoded = tf.io.decode_image((DUMMY / name).read_bytes(), channels=3, expand_animations=False).numpy()
        if name.endswith(".jpg"):  # Pillow decodes JPEG with the accurate integer DCT.
            decoded = tf.io.decode_jpeg((DUMMY / name).read_bytes(), dct_method="INTEGER_ACCURATE").numpy()
        np.testing.assert_array_equal(examples[local_id]["image"], decoded[100:300, 100:300], err_msg=name)


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
        builder_module.ClumpScoutConfig(name="x", source="synthetic", num_test=-1)
    with pytest.raises(ValueError, match="split sizes"):
        builder_module.ClumpScoutConfig(name="x", source="synthetic", num_train=0, num_validation=0, num_test=0)
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


def _manual_dir(tmp_path, catalogue: str, cutouts: list[str], name: str = "boxes.csv"):
    """A manual dir with one catalogue CSV and flat grey 400x400 cutouts of the given names."""
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / name).write_text(catalogue)
    for cutout in cutouts:
        (manual / cutout).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((400, 400, 3), 60, np.uint8)).save(manual / cutout)
    return manual


def test_catalogue_form_forces_the_form_and_each_build_says_what_it_did(tmp_path, capsys):
    # A consensus table (400 px) that also has a label column: auto would read it as crop pixels.
    rows = "".join(f"{k},2,{150 + k},{166 + k},170,186,0.1,0.1\n" for k in range(6))
    manual = _manual_dir(tmp_path, "local_ids,label,x1,x2,y1,y2,mean_tool,false_pos_prob\n" + rows,
                         [f"{k}.png" for k in range(6)])
    config = builder_module.ClumpScoutConfig(name="sdss_consensus", source="sdss", catalogue_form="consensus")
    stale = tmp_path / "data" / "clump_scout" / "sdss_consensus" / "failed_preparation_report.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")  # from an earlier failed build: a successful one removes it
    report = _build(tmp_path, config, manual).load_preparation_report()
    assert not stale.exists()
    assert report.catalogues == {"boxes.csv": "consensus"}
    assert report.counts["kept"] == 6 and report.splits == {"train": 4, "validation": 1, "test": 1}
    out = capsys.readouterr().out
    assert "read boxes.csv as the consensus form (catalogue_form='consensus')" in out
    assert "6 catalogue rows: kept 6, dropped 0; galaxies per split: train 4, validation 1, test 1." in out
    with pytest.raises(ValueError, match="catalogue_form must be"):
        builder_module.ClumpScoutConfig(name="x", source="sdss", catalogue_form="pixels")


def test_two_cutouts_for_one_galaxy_is_an_error_naming_both(tmp_path):
    manual = _manual_dir(tmp_path, "local_ids,label,x1,x2,y1,y2\n7,1,60,76,70,86\n", ["7.png", "images/7.JPG"])
    with pytest.raises(ValueError, match=r"Several cutouts for 1 galaxy id.*7: 7\.png, images/7\.JPG"):
        _build(tmp_path, "sdss", manual)


@pytest.mark.parametrize(
    ("rows", "empty", "summary"),
    [
        ("", "train, validation, test", "0 catalogue rows: kept 0, dropped 0; "),  # header only
        ("1,1,95,105,95,105\n2,1,0,10,90,100\n", "train, validation, test", "kept 0, dropped 2 (bulge 1, edge 1); "),
        ("1,1,60,76,70,86\n2,1,60,76,70,86\n", "test", "2 catalogue rows: kept 2, dropped 0; "),  # too few galaxies
    ],
)
def test_an_empty_split_is_one_error_with_the_summary_and_the_report_is_kept(tmp_path, rows, empty, summary):
    manual = _manual_dir(tmp_path, "local_ids,label,x1,x2,y1,y2\n" + rows, ["1.png", "2.png"])
    with pytest.raises(ValueError) as error:
        _build(tmp_path, "sdss", manual)
    message = str(error.value)
    assert len(message.splitlines()) == 1
    assert f"no galaxy left for split {empty} (" in message and summary in message
    failed = tmp_path / "data" / "clump_scout" / "sdss" / "failed_preparation_report.json"
    assert str(failed) in message
    report = preparation.PreparationReport.from_json(failed.read_text())
    assert len(report.rows) == rows.count("\n")
