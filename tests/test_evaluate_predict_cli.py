"""End-to-end tests of `gsfc-tf evaluate` and `gsfc-tf predict` on a saved smoke run."""

import json
import math
import os

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table

from gsfc_tf import bands, catalogue, cli, commands, detector
from test_detector import as_cutout, build_tiny_split, save_png, save_run_dir

ARCSEC = 1 / 3600


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    # An operating threshold no untrained score reaches (they sit near 1/3): the default must use it.
    return save_run_dir(tmp_path_factory.mktemp("runs") / "run", validation_threshold=0.99)


def fits_cutout(path, size=400):
    """A g, r, i cube with a blob, TAN WCS at RA 150, Dec 2 on the image centre, 1"/px, north up, east left."""
    yy, xx = np.mgrid[:size, :size]
    blob = np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * 30.0**2)).astype(np.float32)
    planes = np.stack([blob * 5 + 0.1 * k for k in range(3)])
    header = fits.PrimaryHDU(planes).header
    header.update(
        CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CUNIT1="deg", CUNIT2="deg", CRVAL1=150.0, CRVAL2=2.0,
        CRPIX1=(size + 1) / 2, CRPIX2=(size + 1) / 2, CD1_1=-ARCSEC, CD1_2=0.0, CD2_1=0.0, CD2_2=ARCSEC,
    )
    fits.PrimaryHDU(planes, header=header).writeto(path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two PNG cutouts (as a glob), a FITS cutout with a WCS and a corrupt file."""
    folder = tmp_path_factory.mktemp("cutouts")
    rng = np.random.default_rng(0)
    for name in ("g0", "g1"):
        save_png(folder / f"{name}.png", as_cutout(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)))
    fits_cutout(folder / "sky.fits")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return [str(folder / "g*.png"), str(folder / "sky.fits"), str(folder / "broken.png")]


def test_predict_writes_a_catalogue_with_sky_positions_for_fits(run_dir, inputs, tmp_path, capsys):
    out = tmp_path / "clumps.csv"
    # Noise cutouts have no host galaxy: the host mask is off to keep every detection.
    argv = ["predict", "--model", str(run_dir), *inputs, "--out", str(out), "--min-score", "0", "--host-mask", "off"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "1 unreadable input skipped" in captured.out
    table = Table.read(out, format="ascii.csv")
    assert set(table["galaxy_id"]) == {"g0", "g1", "sky"}
    # The model sees the central 200x200 of each 400x400 cutout; boxes are cutout pixels.
    for column in ("x_min", "y_min", "x_max", "y_max"):
        assert 100 - 1e-3 <= table[column].min() and table[column].max() <= 300 + 1e-3
    np.testing.assert_allclose(table["x_centre"], (table["x_min"] + table["x_max"]) / 2)
    is_fits = np.asarray(table["galaxy_id"]) == "sky"
    assert np.isfinite(table["ra"][is_fits]).all() and np.isfinite(table["dec"][is_fits]).all()
    assert np.isnan(table["ra"][~is_fits]).all() and np.isnan(table["dec"][~is_fits]).all()
    # 1"/px, centre (200, 200) at (150, 2), y down is south, x right is west.
    sky = table[is_fits]
    np.testing.assert_allclose(sky["dec"], 2.0 + (200.0 - sky["y_centre"]) * ARCSEC, atol=1e-6)
    np.testing.assert_allclose(
        (150.0 - sky["ra"]) * math.cos(math.radians(2.0)), (sky["x_centre"] - 200.0) * ARCSEC, atol=1e-6
    )


def test_predict_writes_an_image_table_accounting_for_every_input(run_dir, inputs, tmp_path, capsys):
    out = tmp_path / "clumps.csv"
    argv = ["predict", "--model", str(run_dir), *inputs, "--out", str(out), "--min-score", "0", "--host-mask", "off"]
    assert cli.main(argv) == 0
    assert str(tmp_path / "clumps.images.csv") in capsys.readouterr().out
    images = Table.read(tmp_path / "clumps.images.csv", format="ascii.csv")
    assert list(images["galaxy_id"]) == ["g0", "g1", "sky", "broken"]
    assert list(images["status"]) == ["detected", "detected", "detected", "unreadable"]
    assert "broken.png" in images["reason"][3]
    clumps = Table.read(out, format="ascii.csv")
    assert list(images["n_clumps"][:3]) == [int(np.sum(clumps["galaxy_id"] == gid)) for gid in ("g0", "g1", "sky")]


def test_predict_checks_its_outputs_before_any_work(inputs, tmp_path, capsys):
    # The model does not exist: the output error must come first, before anything is loaded or run.
    missing_model = str(tmp_path / "no_model")
    (tmp_path / "taken.images.csv").mkdir()
    (tmp_path / "a_file").write_text("")
    for out, message in (
        (tmp_path, "is a directory"),
        (tmp_path / "taken.csv", "taken.images.csv is a directory"),
        (tmp_path / "a_file" / "clumps.csv", "is a file, not a folder"),
    ):
        assert cli.main(["predict", "--model", missing_model, *inputs, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_predict_fits_format_round_trips(run_dir, inputs, tmp_path):
    csv_path, fits_path = tmp_path / "clumps.csv", tmp_path / "clumps.fits"
    common = ["predict", "--model", str(run_dir), *inputs, "--min-score", "0", "--batch-size", "3"]
    assert cli.main([*common, "--out", str(csv_path)]) == 0
    assert cli.main([*common, "--out", str(fits_path), "--format", "fits"]) == 0
    from_csv, from_fits = Table.read(csv_path, format="ascii.csv"), Table.read(fits_path)
    assert from_fits.colnames == from_csv.colnames and len(from_fits) == len(from_csv) > 0
    assert from_fits["ra"].unit == u.deg and from_fits["x_min"].unit == u.pix
    assert list(from_fits["galaxy_id"]) == list(from_csv["galaxy_id"])
    for column in ("x_min", "y_max", "score", "class_id"):
        np.testing.assert_allclose(from_fits[column], from_csv[column], rtol=1e-6)
    np.testing.assert_allclose(from_fits["ra"], from_csv["ra"], rtol=1e-12, equal_nan=True)


def test_predict_default_min_score_is_the_runs_operating_threshold(run_dir, inputs, tmp_path, capsys):
    out = tmp_path / "clumps.csv"
    assert cli.main(["predict", "--model", str(run_dir), *inputs, "--out", str(out)]) == 0
    assert "score >= 0.99" in capsys.readouterr().out
    assert len(Table.read(out, format="ascii.csv")) == 0


@pytest.mark.parametrize("command", [["predict", "image.png"], ["survey", "--out", "x"]])
def test_band_options_parse_one_value_or_one_per_band(command, capsys):
    assert tuple(commands._BAND_OPTIONS) == bands.BAND_OPTIONS, "the parsers' band options are the library's"
    parser = cli._build_parser(command)
    args = parser.parse_args([*command, "--model", "m", "--zero-point", "22.5", "--psf-fwhm", "U=1.5, g=1.4",
                              "--pixel-scale", "0.396"])
    assert commands.band_options(args) == {"zero_point": 22.5, "fwhm_arcsec": {"u": 1.5, "g": 1.4},
                                           "pixel_scale_arcsec": 0.396}
    assert commands.band_options(parser.parse_args([*command, "--model", "m"])) == {}
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command, "--model", "m", "--gain", "u:4"])
    assert exit_.value.code == 2
    assert "error: argument --gain: must be a number or band=number pairs (u=22.3,g=22.5), got 'u:4'" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["predict", "image.png"], ["export", "--out", "x/1"], ["survey", "--out", "x"]])
def test_min_score_must_be_a_score(command, capsys):
    assert commands._DEFAULT_MIN_SCORE == detector.DEFAULT_MIN_SCORE, "the help's default is the library's"
    assert (commands._HOST_MASK_MODES, commands._DEFAULT_HOST_MASK) == (
        catalogue.HOST_MASK_MODES, catalogue.DEFAULT_HOST_MASK
    ), "the parsers' host-mask choices are the library's"
    parser = cli._build_parser(command)
    for given in ("0", "0.3", "1"):
        assert parser.parse_args([*command, "--model", "m", "--min-score", given]).min_score == float(given)
    assert parser.parse_args([*command, "--model", "m"]).min_score is None
    for bad in ("1.5", "-0.1", "nan", "high"):
        with pytest.raises(SystemExit) as exit_:
            cli.main([*command, "--model", "m", "--min-score", bad])
        assert exit_.value.code == 2
        assert f"error: argument --min-score: must be a score in [0, 1], got '{bad}'" in capsys.readouterr().err


def test_predict_fails_when_nothing_is_readable(run_dir, inputs, tmp_path, capsys):
    out = tmp_path / "clumps.csv"
    unreadable = [inputs[-1], str(tmp_path / "nowhere.png")]
    # A catalogue of an earlier run at the same place must not stay beside the new image table.
    assert cli.main(["predict", "--model", str(run_dir), inputs[1], "--out", str(out), "--min-score", "0"]) == 0
    assert len(Table.read(out, format="ascii.csv")) > 0
    assert cli.main(["predict", "--model", str(run_dir), *unreadable, "--out", str(out)]) == 1
    assert "none of the 2 inputs" in capsys.readouterr().err
    assert len(Table.read(out, format="ascii.csv")) == 0
    assert list(Table.read(tmp_path / "clumps.images.csv", format="ascii.csv")["status"]) == ["unreadable"] * 2


def test_predict_never_writes_over_its_inputs(run_dir, inputs, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b", "c"):
        save_png(folder / f"{name}.png", np.zeros((200, 200, 3), np.uint8))
    fits_cutout(folder / "sky.fits")
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    pngs = [str(folder / f"{name}.png") for name in "abc"]
    for argv, message in (
        (["--out", *pngs], "a.png is an image name"),  # what the shell makes of `--out *.png`
        ([*pngs, "--out", str(tmp_path / "victim" / "a.png")], "a.png is an image name"),
        ([str(folder / "*.fits"), "--out", str(folder / "sky.fits")], "sky.fits is one of the input images"),
        ([pngs[0], "--out", str(folder / "sky.fits")], "sky.fits holds a FITS image"),
        ([pngs[0], "--out", str(tmp_path / "x.csv"), "--format", "fits"], "x.csv names a csv file but the format is fits"),
    ):
        assert cli.main(["predict", "--model", str(run_dir), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
    assert not (tmp_path / "victim").exists()


def test_predict_format_fits_names_its_default_output(run_dir, inputs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["predict", "--model", str(run_dir), inputs[1], "--format", "fits", "--min-score", "0"]) == 0
    assert len(Table.read(tmp_path / "clumps.fits")) > 0 and len(Table.read(tmp_path / "clumps.images.fits")) == 1


def test_predict_names_odd_inputs_and_counts_bad_pixels(run_dir, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    odd_name = os.fsdecode(b"bad\xff.png")  # not UTF-8: a lone surrogate in Python
    save_png(folder / odd_name, np.zeros((200, 200, 3), np.uint8))
    with fits.open(fits_cutout(folder / "holes.fits"), mode="update") as hdul:
        hdul[0].data[:, :10, :10] = np.nan
    fits_cutout(folder / "blank.fits")
    with fits.open(folder / "blank.fits", mode="update") as hdul:
        hdul[0].data[:] = np.nan
    save_png(folder / "dot.png", np.zeros((1, 1, 3), np.uint8))
    out = tmp_path / "clumps.csv"
    # Blank pictures have no host galaxy: the host mask is off to keep the rows this test reads.
    argv = ["predict", "--model", str(run_dir), str(folder / "*"), "--out", str(out), "--min-score", "0", "--host-mask", "off"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("n_bad_pixels") == 1, err  # one warning for the run, not one per image
    images = Table.read(tmp_path / "clumps.images.csv", format="ascii.csv")
    by_id = {row["galaxy_id"]: row for row in images}
    assert set(by_id) == {"bad\\xff", "blank", "dot", "holes"}
    assert by_id["bad\\xff"]["status"] == "detected" and by_id["bad\\xff"]["path"].endswith("bad\\xff.png")
    assert by_id["holes"]["n_bad_pixels"] == 100 and by_id["holes"]["status"] == "detected"
    assert by_id["blank"]["status"] == "unreadable" and "no finite pixel values" in by_id["blank"]["reason"]
    assert by_id["dot"]["status"] == "unreadable" and "1x1 px is too small" in by_id["dot"]["reason"]
    assert "bad\\xff" in set(Table.read(out, format="ascii.csv")["galaxy_id"])


def test_evaluate_writes_metrics_and_plots(run_dir, tmp_path_factory, tmp_path, capsys):
    data_dir = build_tiny_split(tmp_path_factory.mktemp("tfds"))
    out = tmp_path / "eval"
    # --dataset defaults to the run's config.json dataset, the tiny config prepared in data_dir.
    argv = ["evaluate", "--model", str(run_dir), "--data-dir", str(data_dir), "--limit", "3", "--batch-size", "2"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 galaxies" in printed and "AP50" in printed and "validation threshold 0.99" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"completeness", "purity", "operating_point", "per_class", "curves", "by_size", "coco"} <= set(metrics)
    assert metrics["n_images"] == 3
    # The run's validation threshold (0.99) is above every untrained score: nothing predicted there.
    assert metrics["fixed_threshold"]["threshold"] == 0.99 and metrics["fixed_threshold"]["n_predicted"] == 0
    for name in ("completeness_purity", "detections", "completeness_by_size"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Beside IoU 0.5, the centre match (default 4 px), at the same validation threshold; --centre-distance sets it.
    assert metrics["by_centre"]["criterion"] == {"iou_threshold": None, "centre_distance": 4.0}
    assert metrics["fixed_threshold"]["centre"]["threshold"] == 0.99 and "(centres <= 4 px:" in printed
    assert cli.main([*argv, "--out", str(tmp_path / "wide"), "--centre-distance", "6"]) == 0
    assert "(centres <= 6 px:" in capsys.readouterr().out
    assert cli.main([*argv, "--out", str(tmp_path / "off"), "--centre-distance", "0"]) == 0
    assert "by_centre" not in json.loads((tmp_path / "off" / "metrics.json").read_text())
    with pytest.raises(SystemExit):
        cli.main([*argv, "--out", str(tmp_path / "bad"), "--centre-distance", "-1"])
    assert "must be a distance in px >= 0, got '-1'" in capsys.readouterr().err


def test_evaluate_on_an_export_scores_the_dataset_the_run_trained_on(run_dir, tmp_path_factory, tmp_path, capsys):
    data_dir = build_tiny_split(tmp_path_factory.mktemp("tfds"))
    export = tmp_path / "serving" / "1"
    assert cli.main(["export", "--model", str(run_dir), "--out", str(export)]) == 0
    assert detector.read_metadata(export)["dataset"] == "clump_scout/synthetic_tiny"
    argv = ["evaluate", "--model", str(export), "--data-dir", str(data_dir), "--limit", "2", "--batch-size", "2"]
    assert cli.main([*argv, "--out", str(tmp_path / "eval")]) == 0
    assert "clump_scout/synthetic_tiny test, 2 galaxies" in capsys.readouterr().out
    # An export from before exports recorded their dataset: evaluate asks for one rather than
    # building the 525 MB clump_scout/synthetic into data_dir.
    metadata_path = export / detector.METADATA_PATH
    metadata = json.loads(metadata_path.read_text())
    metadata_path.write_text(json.dumps({key: value for key, value in metadata.items() if key != "dataset"}))
    assert cli.main([*argv, "--out", str(tmp_path / "old")]) == 2
    err = capsys.readouterr().err
    assert f"{export} does not record the dataset it was trained on" in err and "--dataset" in err
    assert err.count("\n") == 1 and not (tmp_path / "old").exists()
    assert not (data_dir / "clump_scout" / "synthetic").exists()


def test_evaluate_with_tta_scores_at_the_threshold_tta_reaches_on_the_runs_validation_split(
    run_dir, tmp_path_factory, tmp_path, capsys
):
    data_dir = build_tiny_split(tmp_path_factory.mktemp("tfds"))
    argv = ["evaluate", "--model", str(run_dir), "--data-dir", str(data_dir), "--tta", "--batch-size", "2"]
    assert cli.main([*argv, "--split", "validation", "--out", str(tmp_path / "validation")]) == 0
    chosen = json.loads((tmp_path / "validation" / "metrics.json").read_text())["operating_point"]["threshold"]
    capsys.readouterr()
    assert cli.main([*argv, "--out", str(tmp_path / "test")]) == 0
    assert "Choosing the threshold under TTA on the run's validation split first" in capsys.readouterr().out
    # Not the run's validation.json threshold (0.99, chosen without TTA): the one TTA's scores reach.
    metrics = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert chosen is not None and chosen != 0.99
    assert metrics["fixed_threshold"]["threshold"] == pytest.approx(chosen)


def test_tta_validation_threshold_needs_tta_and_a_validation_split(run_dir, tmp_path):
    from gsfc_tf.split_evaluation import tta_validation_threshold

    with pytest.raises(ValueError, match="does not run TTA"):
        tta_validation_threshold(detector.load_detector(run_dir))
    without = tmp_path / "run"
    without.mkdir()
    (without / "model.keras").symlink_to(run_dir / "model.keras")
    run_config = json.loads((run_dir / "config.json").read_text())
    (without / "config.json").write_text(json.dumps({**run_config, "validation_split": None}))
    assert tta_validation_threshold(detector.load_detector(without, tta=True)) is None


def _texts(column):
    """A text column as read back, empty strings (masked) as ""."""
    return ["" if value is np.ma.masked else str(value) for value in column]


def test_predict_host_mask_and_photometry_wiring(run_dir, tmp_path, capsys):
    # Wiring only (the values are tested on truth boxes in test_catalogue_science.py): generator
    # FITS with named bands get photometry columns with units, the rest host columns only.
    from tfds_clumpscout.clump_scout.synthetic_fits import write_synthetic_fits

    paths, _ = write_synthetic_fits(tmp_path / "fits", 2, seed=3)
    inputs = [*map(str, paths), str(fits_cutout(tmp_path / "sky.fits"))]
    tables = {}
    for mode in ("flag", "drop", "off"):
        out = tmp_path / mode / "clumps.fits"
        argv = ["predict", "--model", str(run_dir), *inputs, "--out", str(out), "--min-score", "0", "--host-mask", mode]
        assert cli.main(argv) == 0
        tables[mode] = Table.read(out), Table.read(out.with_name("clumps.images.fits"))
    capsys.readouterr()
    clumps, images = tables["flag"]
    assert clumps["flux_r"].unit.to_string() == "nmgy" and clumps["mag_g"].unit == u.mag
    assert clumps["distance_arcsec"].unit == u.arcsec and images["host_area"].unit == u.pix**2
    photometry = np.isfinite(np.asarray(clumps["flux_r"]))
    assert set(clumps["galaxy_id"][photometry]) == {"galaxy_00000", "galaxy_00001"}
    assert not photometry[clumps["galaxy_id"] == "sky"].any()
    assert _texts(images["photometry_note"])[:2] == ["", ""] and images["photometry_note"][2].startswith("no image HDU")
    assert _texts(images["host_flag"]) == ["", "", ""] and np.isfinite(np.asarray(images["host_x"])).all()
    # drop keeps exactly the rows flag marks on the host; off segments nothing.
    dropped = tables["drop"][0]
    assert len(dropped) == np.sum(~np.asarray(clumps["off_host"])) and not np.asarray(dropped["off_host"]).any()
    assert len(tables["off"][0]) == len(clumps) and set(tables["off"][1]["host_flag"]) == {"not_segmented"}
    assert list(tables["flag"][1]["n_off_host"]) == list(tables["drop"][1]["n_off_host"])


def test_predict_rejects_an_unknown_host_mask(capsys):
    with pytest.raises(SystemExit):
        cli.main(["predict", "--model", "m", "x.png", "--host-mask", "maybe"])
    assert "--host-mask" in capsys.readouterr().err
