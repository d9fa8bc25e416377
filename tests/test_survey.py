"""`gsfc-tf survey` (gsfc_tf.survey): the Beam pipeline gives predict's catalogue, every input's
status, and reruns that never duplicate rows; the operating threshold travels with an export;
inputs, manifests and outputs are checked before the model loads.

One untrained smoke run (scores near 1/3) and its export; the minimum score is set between two
images' best scores so that the inputs give detected, no_clumps and unreadable statuses.
"""

import csv
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import BeamAssertException, assert_that, equal_to
from astropy.io import fits
from astropy.table import Table

import apache_beam as beam
from gsfc_tf import cli, survey
from gsfc_tf.catalogue import CatalogueRow, expand_image_paths, image_table_path, predict_catalogue
from gsfc_tf.detector import METADATA_PATH, default_min_score, load_detector
from test_detector import as_cutout, save_png, save_run_dir
from test_evaluate_predict_cli import fits_cutout
from tfds_clumpscout.clump_scout.synthetic_fits import write_synthetic_fits

PIXEL_COLUMNS = ("x_min", "y_min", "x_max", "y_max", "x_centre", "y_centre")
VALIDATION_THRESHOLD = 0.3


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    run_dir = save_run_dir(root / "run", validation_threshold=VALIDATION_THRESHOLD)
    assert cli.main(["export", "--model", str(run_dir), "--out", str(root / "export" / "1")]) == 0
    return {"run": str(run_dir), "export": str(root / "export")}


@pytest.fixture(scope="module")
def cutouts(tmp_path_factory, models):
    """Three 400-px PNG cutouts, a blank 200-px crop (another batch size, no host), a FITS with a WCS, two
    generator FITS with named bands (photometry), a corrupt file."""
    folder = tmp_path_factory.mktemp("cutouts")
    rng = np.random.default_rng(1)
    for name in ("a", "b", "c"):
        save_png(folder / f"{name}.png", as_cutout(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)))
    save_png(folder / "crop.png", np.zeros((200, 200, 3), np.uint8))  # blank: no host galaxy
    fits_cutout(folder / "sky.fits")
    generated, _ = write_synthetic_fits(tmp_path_factory.mktemp("generated"), 2, seed=3)
    for path in generated:
        shutil.copy(path, folder / path.name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    paths = sorted(str(path) for path in folder.iterdir())
    return {"folder": folder, "paths": paths, "missing": str(folder / "missing.png")}


@pytest.fixture(scope="module")
def min_score(models, cutouts):
    """A score between the lowest and the next best image's top score: one readable image has no clumps."""
    top: dict[str, float] = {}
    for row in _predict(models["export"], cutouts["paths"], 0.0).rows:
        top[row.galaxy_id] = max(top.get(row.galaxy_id, 0.0), row.score)
    lowest, next_lowest = sorted(top.values())[:2]
    return (lowest + next_lowest) / 2


def _predict(model, paths, min_score):
    return predict_catalogue(load_detector(model), paths, min_score=min_score)


_CLUMP_COLUMNS = {field.name: field.type for field in dataclasses.fields(CatalogueRow)}


def _assert_same_rows(actual, expected):
    """Clump rows (dicts or tables) equal row for row in every `CatalogueRow` column: boxes within 1e-4 px,
    other numbers to 1e-6 (relative for the photometry; NaN = NaN), the rest exactly."""
    assert len(actual) == len(expected) > 0
    for column, kind in _CLUMP_COLUMNS.items():
        values, wanted = [row[column] for row in actual], [row[column] for row in expected]
        if kind != "float":
            # A CSV column that is empty in every row reads back masked: compare as text.
            assert [str(v) if v is not np.ma.masked else "" for v in values] == [
                str(v) if v is not np.ma.masked else "" for v in wanted], column
        else:
            tolerance = 1e-4 if column in PIXEL_COLUMNS else 1e-6
            np.testing.assert_allclose(
                np.asarray(values, float), np.asarray(wanted, float), atol=tolerance, rtol=1e-6, equal_nan=True,
                err_msg=column,
            )


def test_pipeline_gives_predicts_rows_and_every_inputs_status(models, cutouts, min_score):
    paths = [*cutouts["paths"], cutouts["missing"]]
    items = survey.list_inputs(paths)
    expected = _predict(models["export"], paths, min_score)
    expected_rows = [dataclasses.asdict(row) for row in expected.rows]
    position = {item.galaxy_id: index for index, item in enumerate(items)}

    def same_as_predict(records):
        records = sorted(records, key=lambda record: (position[record["galaxy_id"]], -record["score"]))
        try:
            _assert_same_rows(records, expected_rows)
        except AssertionError as error:
            raise BeamAssertException(str(error)) from error

    handler = survey.DetectorHandler(models["export"], min_score=min_score, batch_size=3)
    with TestPipeline() as pipeline:
        outputs = pipeline | beam.Create(items) | survey.DetectClumps(handler)
        assert_that(outputs["clumps"], same_as_predict, label="clumps")
        statuses = outputs["images"] | beam.Map(lambda r: (r["galaxy_id"], r["path"], r["status"], r["reason"], r["n_clumps"]))
        assert_that(
            statuses,
            equal_to([(row.galaxy_id, str(row.path), row.status, row.reason, row.n_clumps) for row in expected.images]),
            label="images",
        )
    # The fixture's threshold gives every status, so all three paths were exercised.
    assert {row.status for row in expected.images} == {"detected", "no_clumps", "unreadable"}


def test_survey_command_writes_predicts_catalogue_and_image_table(models, cutouts, tmp_path, capsys):
    inputs = [str(cutouts["folder"] / "*.png"), str(cutouts["folder"] / "*.fits"), cutouts["missing"]]
    prefix = str(tmp_path / "survey" / "gz")
    # Off-host detections flagged, not dropped: the untrained detector's boxes fall anywhere.
    assert cli.main(["survey", "--model", models["run"], "--inputs", *inputs, "--out", prefix, "--merge", "csv",
                     "--batch-size", "2", "--host-mask", "flag", "--gain", "u=4,g=5", "--",
                     "--direct_num_workers=1"]) == 0
    out = capsys.readouterr().out
    assert f"score >= {VALIDATION_THRESHOLD:.2f} (validation operating threshold of" in out
    predicted = tmp_path / "predict.csv"
    assert cli.main(["predict", "--model", models["run"], *inputs, "--out", str(predicted), "--host-mask", "flag"]) == 0

    merged = Table.read(f"{prefix}.csv", format="ascii.csv")
    _assert_same_rows(merged, Table.read(predicted, format="ascii.csv"))
    # Photometry and host columns were compared, not only NaNs: the generator FITS rows have them.
    measured = np.isfinite(np.asarray(merged["flux_r"], float))
    assert set(merged["galaxy_id"][measured]) == {"galaxy_00000", "galaxy_00001"}
    # Hosts found and not found (the 200-px noise crop) both went through.
    assert {"", "no_segment_at_centre"} <= {"" if flag is np.ma.masked else flag for flag in merged["host_flag"]}
    survey_images = Table.read(f"{prefix}.images.csv", format="ascii.csv")
    predict_images = Table.read(image_table_path(predicted), format="ascii.csv")
    for column in ("galaxy_id", "status", "n_clumps", "host_flag", "n_off_host", "photometry_note"):
        assert list(survey_images[column]) == list(predict_images[column]), column
    for column in ("host_x", "host_y", "host_semi_major_axis", "host_axis_ratio", "host_position_angle",
                   "host_half_light_radius", "host_area", "host_fwhm"):
        np.testing.assert_allclose(np.asarray(survey_images[column], float), np.asarray(predict_images[column], float),
                                   rtol=1e-9, equal_nan=True, err_msg=column)
    assert done_host_mask(prefix) == "flag"
    (done,) = survey.completed_runs(prefix)
    assert done["band_options"] == {"gain": {"u": 4.0, "g": 5.0}}
    with pytest.raises(ValueError, match=r"with band options \{'gain': \{'u': 4.0, 'g': 5.0\}\}, not \{\}: use another --out$"):
        survey.run_survey(models["run"], prefix, patterns=inputs, host_mask="flag")
    assert list(survey_images["status"]).count("unreadable") == 2

    (done,) = survey.completed_runs(prefix)
    assert done["min_score"] == VALIDATION_THRESHOLD and "validation.json" in done["min_score_source"]
    assert done["status_counts"]["unreadable"] == 2 and done["n_inputs"] == len(predict_images)
    schema = pq.read_schema(done["clump_shards"][0])
    assert schema.metadata[b"gsfc_tf.min_score"] == str(VALIDATION_THRESHOLD).encode()


def done_host_mask(prefix):
    (done,) = survey.completed_runs(prefix)
    return done["host_mask"]


def _merged(prefix):
    return Table.read(f"{prefix}.csv", format="ascii.csv"), Table.read(f"{prefix}.images.csv", format="ascii.csv")


def test_rerun_after_a_crash_counts_nothing_twice(models, cutouts, min_score, tmp_path):
    prefix = str(tmp_path / "gz")
    options = dict(patterns=cutouts["paths"], min_score=min_score, merge="csv")
    crashed = survey.run_survey(models["export"], prefix, **options)
    clumps, images = _merged(prefix)
    assert len(images) == len(cutouts["paths"]) and len(clumps) == crashed.run["n_clumps"] > 0
    assert survey.run_survey(models["export"], prefix, **options).run is None, "all inputs done: nothing to run"
    # As if killed after writing its shards, before its done manifest: the shards stay behind.
    Path(f"{prefix}-{crashed.run['run_id']}-done.json").unlink()

    rerun = survey.run_survey(models["export"], prefix, **options)
    assert rerun.n_already_done == 0 and sum(rerun.run["status_counts"].values()) == len(cutouts["paths"])
    assert list(tmp_path.glob(f"gz-{crashed.run['run_id']}-clumps-*.parquet")), "the crashed run's shards are still there"
    again_clumps, again_images = _merged(prefix)
    _assert_same_rows(again_clumps, clumps)
    assert list(again_images["galaxy_id"]) == list(images["galaxy_id"])


def test_grown_input_list_processes_only_the_new_inputs(models, cutouts, min_score, tmp_path):
    prefix = str(tmp_path / "gz")
    first, rest = cutouts["paths"][:3], cutouts["paths"][3:]
    survey.run_survey(models["export"], prefix, patterns=first, min_score=min_score)
    grown = survey.run_survey(models["export"], prefix, patterns=cutouts["paths"], min_score=min_score, merge="fits")
    assert grown.n_already_done == len(first) and sum(grown.run["status_counts"].values()) == len(rest)
    with open(grown.run["inputs"]) as file:
        assert [row["path"] for row in csv.DictReader(file)] == rest

    clumps, images = Table.read(f"{prefix}.fits"), Table.read(f"{prefix}.images.fits")
    assert list(images["path"]) == cutouts["paths"]
    expected = _predict(models["export"], cutouts["paths"], min_score)
    _assert_same_rows(clumps, [dataclasses.asdict(row) for row in expected.rows])
    # Rows made at another threshold would not belong in the same catalogue.
    with pytest.raises(ValueError, match=rf"at score >= {min_score}, not .* at >= 0.9: use another --out"):
        survey.run_survey(models["export"], prefix, patterns=cutouts["paths"], min_score=0.9)


def test_manifest_gives_ids_positions_and_relative_paths(cutouts, tmp_path):
    manifest = cutouts["folder"] / "manifest.csv"
    manifest.write_text("path,id,ra,dec\na.png,J1,150.5,2.25\nb.png,,,\n")
    # a.png is listed twice: once, with the manifest's id and position.
    items = survey.list_inputs([str(cutouts["folder"] / "a.png")], manifest=str(manifest))
    assert [item.path for item in items] == [str(cutouts["folder"] / "a.png"), str(cutouts["folder"] / "b.png")]
    assert [item.galaxy_id for item in items] == ["J1", "b"]
    assert (items[0].galaxy_ra, items[0].galaxy_dec) == (150.5, 2.25) and math.isnan(items[1].galaxy_ra)
    (tmp_path / "bad.csv").write_text("file\na.png\n")
    with pytest.raises(ValueError, match="a manifest needs a 'path' column"):
        survey.list_inputs(manifest=str(tmp_path / "bad.csv"))


def test_export_records_the_runs_operating_threshold(models):
    exported, run = load_detector(models["export"]), load_detector(models["run"])
    assert exported.run_dir is None and exported.operating_threshold == VALIDATION_THRESHOLD
    assert default_min_score(exported) == default_min_score(run) == VALIDATION_THRESHOLD
    metadata = json.loads((Path(models["export"]) / "1" / METADATA_PATH).read_text())
    assert metadata["operating_threshold"] == VALIDATION_THRESHOLD
    assert "recorded in the export's metadata" in survey.operating_threshold(exported).source


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts the process's threads in /proc")
def test_reading_shards_back_starts_no_thread(tmp_path):
    # Arrow's thread pools, once started, are still alive at exit, and tearing them down aborted
    # about one survey in 40 ("terminate called without an active exception", apache/arrow#34314).
    # A fresh process, since another test may have started them in this one.
    shard = tmp_path / "images.parquet"
    pq.write_table(pa.table({"path": ["a.png", "b.png"], "status": ["detected", "unreadable"]}), shard)
    script = (
        "import os\n"
        "from gsfc_tf import survey\n"
        "before = len(os.listdir('/proc/self/task'))\n"
        f"assert survey._read_table({str(shard)!r}, ['status'])['status'].to_pylist() == ['detected', 'unreadable']\n"
        "print('new threads:', len(os.listdir('/proc/self/task')) - before)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=Path(survey.__file__).parents[1], capture_output=True,
                            text=True, check=True)
    assert result.stdout.splitlines()[-1] == "new threads: 0"


def _copies(cutouts, folder, names):
    """Copies of the fixture's PNG cutouts under `folder` with the given relative names."""
    sources = [cutouts["folder"] / f"{letter}.png" for letter in "abc"]
    for source, name in zip(sources, names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / name)
    return [str(folder / name) for name in names]


def test_rerun_with_the_inputs_spelled_otherwise_processes_nothing_again(models, cutouts, tmp_path, monkeypatch):
    monkeypatch.chdir(cutouts["folder"])
    prefix = str(tmp_path / "gz")
    first = survey.run_survey(models["export"], prefix, patterns=["a.png", "b.png"], merge="csv")
    spelled_otherwise = [str(cutouts["folder"] / "a.png"), f"../{cutouts['folder'].name}/b.png"]
    again = survey.run_survey(models["export"], prefix, patterns=spelled_otherwise, merge="csv")
    assert again.run is None and again.n_already_done == 2
    clumps, images = _merged(prefix)
    assert list(images["galaxy_id"]) == ["a", "b"] and len(clumps) == first.run["n_clumps"]
    assert list(images["path"]) == [str((cutouts["folder"] / name).resolve()) for name in ("a.png", "b.png")]


def test_local_globs_match_the_files_predict_matches(tmp_path):
    for name in ("a.png", "sub/b.png", "sub/deeper/c.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    # Beam's matcher gives 2 and 3 files: `**/` there needs a folder, and `**.png` crosses folders.
    for pattern, n_files in (("**/*.png", 3), ("**.png", 1)):
        expected = [str(path.resolve()) for path in expand_image_paths([str(tmp_path / pattern)])]
        assert [item.path for item in survey.list_inputs([str(tmp_path / pattern)])] == expected
        assert len(expected) == n_files, pattern


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path,id,path\na.png,J1,b.png\n", "line 1: the column 'path' appears 2 times; keep one"),
        ("path,id\na.png,J1\nb.png,J2\n./a.png,J3\n", r"line 4: .*a.png is already listed on line 2; list each"),
        ("path,id\na.png,J1\n,J2\n", "line 3: no path; give every row a path"),
        ("id,path\nJ1,a.png\nJ2\n", "line 3: no path; give every row a path"),
        ("path,ra,dec\na.png,999,0\n", r"line 2: ra 999.0 is outside \[0, 360\) degrees"),
        ("path,ra,dec\na.png,10,-200\n", r"line 2: dec -200.0 is outside \[-90, 90\] degrees"),
    ],
    ids=["column twice", "path twice", "empty path", "short row", "ra", "dec"],
)
def test_malformed_manifest_is_refused_naming_its_line(tmp_path, text, message):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(text)
    with pytest.raises(ValueError, match=f"^{manifest} {message}"):
        survey.list_inputs(manifest=str(manifest))


def test_manifest_with_a_byte_order_mark_is_read(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,id,ra,dec\na.png,J1,359.5,-90\n", encoding="utf-8-sig")
    (item,) = survey.list_inputs(manifest=str(manifest))
    assert (item.path, item.galaxy_id, item.galaxy_ra, item.galaxy_dec) == (str(tmp_path / "a.png"), "J1", 359.5, -90)


def test_a_file_name_that_is_not_utf8_is_reported_unreadable_and_the_rest_processed(models, cutouts, tmp_path):
    folder = tmp_path / "in"
    _copies(cutouts, folder, ["a.png"])
    shutil.copy(cutouts["folder"] / "b.png", os.fsencode(folder / "bad") + b"\xff.png")
    prefix = str(tmp_path / "gz")
    assert cli.main(["survey", "--model", models["export"], "--inputs", str(folder / "*.png"), "--out", prefix,
                     "--merge", "csv"]) == 0
    images = Table.read(f"{prefix}.images.csv", format="ascii.csv")
    assert list(images["path"]) == [str(folder / "a.png"), str(folder / "bad\\xff.png")]
    assert list(images["galaxy_id"]) == ["a", "bad\\xff"] and images["status"][0] != "unreadable"
    assert images["status"][1] == "unreadable"
    assert images["reason"][1] == r"bad\xff.png: the file name is not valid UTF-8; rename the file"


def _must_not_load(model):
    raise AssertionError(f"the model {model} was loaded before the check")


def test_rerun_from_another_directory_finds_the_earlier_runs(models, cutouts, tmp_path, monkeypatch):
    paths = _copies(cutouts, tmp_path / "in", ["a.png"])
    monkeypatch.chdir(tmp_path)
    first = survey.run_survey(models["export"], "out/gz", patterns=paths)
    recorded = [first.run["inputs"], *first.run["clump_shards"], *first.run["image_shards"]]
    assert all(os.path.isabs(path) for path in recorded), recorded
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert survey.run_survey(models["export"], str(tmp_path / "out" / "gz"), patterns=paths).run is None


def test_a_run_may_not_give_another_file_a_galaxy_id_an_earlier_run_gave(models, cutouts, tmp_path, monkeypatch):
    first, second = _copies(cutouts, tmp_path / "svin", ["good.png", "sub/good.png"])
    prefix = str(tmp_path / "gz")
    survey.run_survey(models["export"], prefix, patterns=[first])
    monkeypatch.setattr(survey, "load_detector", _must_not_load)
    with pytest.raises(ValueError, match=rf"{second} would be galaxy 'good', the id run \S+ under {prefix} gave "
                                         rf"{first}: give the inputs ids in a manifest's 'id' column"):
        survey.run_survey(models["export"], prefix, patterns=[second])


def test_outputs_that_cannot_be_written_are_refused_before_the_model_loads(models, cutouts, tmp_path, monkeypatch):
    monkeypatch.setattr(survey, "load_detector", _must_not_load)
    options = dict(patterns=[cutouts["paths"][0]], merge="csv")
    (tmp_path / "file").touch()
    with pytest.raises(ValueError, match=f"{tmp_path / 'file'} is a file, not a folder"):
        survey.run_survey(models["export"], str(tmp_path / "file" / "gz"), **options)
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    # As root (CI, containers) permission bits do not stop writes: the folder is read-only to os.access.
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != read_only and access(path, mode))
    with pytest.raises(ValueError, match=f"{read_only} is not writable"):
        survey.run_survey(models["export"], str(read_only / "gz"), **options)
    # A directory as the prefix would give hidden files named `-<run id>-...` inside it.
    for directory in (str(tmp_path), f"{tmp_path}/out/"):
        with pytest.raises(ValueError, match=f"{directory} is a directory; give a file-name prefix inside it, e.g. "):
            survey.run_survey(models["export"], directory, **options)


def test_retry_unreadable_redoes_only_those_and_the_merge_keeps_each_inputs_latest_row(models, cutouts, tmp_path):
    folder = tmp_path / "in"
    _copies(cutouts, folder, ["a.png"])
    manifest = folder / "manifest.csv"
    manifest.write_text("path,ra,dec\na.png,150.5,2.25\nlate.png,10,-5\n")
    prefix = str(tmp_path / "gz")
    first = survey.run_survey(models["export"], prefix, manifest=str(manifest))
    assert first.run["status_counts"]["unreadable"] == 1, "late.png is missing"
    _copies(cutouts, folder, ["late.png"])
    assert survey.run_survey(models["export"], prefix, manifest=str(manifest)).run is None, "done, unless retried"

    retried = survey.run_survey(models["export"], prefix, manifest=str(manifest), merge="fits", retry_unreadable=True)
    assert retried.n_already_done == 1 and retried.run["n_inputs"] == 1
    assert retried.run["status_counts"]["unreadable"] == 0
    clumps, images = Table.read(f"{prefix}.fits"), Table.read(f"{prefix}.images.fits")
    assert list(images["galaxy_id"]) == ["a", "late"] and "unreadable" not in list(images["status"])
    assert len(clumps) == first.run["n_clumps"] + retried.run["n_clumps"]
    # The manifest's positions reach the merged image table, in degrees.
    assert list(images["galaxy_ra"]) == [150.5, 10] and list(images["galaxy_dec"]) == [2.25, -5]
    assert images["galaxy_ra"].unit == "deg"


def test_band_options_reach_the_reader(tmp_path):
    # A FITS cutout whose bands lack zero points and PSF FWHMs: no photometry, unless the run gives them.
    (path,), _ = write_synthetic_fits(tmp_path, 1, seed=4, image_size=64)
    with fits.open(path, mode="update") as hdul:
        for hdu in hdul[1:]:
            for key in ("MAGZP", "PSFFWHM"):
                hdu.header.remove(key, ignore_missing=True)
    item = survey.SurveyInput(str(path), "g")
    _, bare = survey._read(item, {})
    assert bare.bands is None and bare.note.startswith("band 'u' has no zero point")
    _, given = survey._read(item, {"zero_point": 22.5, "fwhm_arcsec": {band: 1.4 for band in "ugriz"}})
    assert given.note == "" and given.bands.psf_fwhm_px["r"] == pytest.approx(1.4 / 0.396)
