"""gsfc_tf.completeness and `gsfc-tf completeness`: injection through the detector's own picture, matching, outputs.

A classical peak finder stands in for a trained detector in the fast tests: it finds bright
compact light wherever it is drawn, so a clump injected at the wrong place (a flipped frame, a box
in the wrong pixels) is missed. The trained-model test is `slow`.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from scipy import ndimage

from gsfc_tf import cli, completeness, conventions, data
from gsfc_tf.commands import completeness as completeness_command
from gsfc_tf.evaluation import ImageBoxes
from gsfc_tf.images import read_image
from gsfc_tf.injection import truth_boxes
from tfds_clumpscout.clump_scout.synthetic import RenderFamily
from tfds_clumpscout.clump_scout.synthetic_fits import write_synthetic_fits

BRIGHT, FAINT = 0.3, 0.0005


class PeakDetector:
    """Boxes on local maxima of a picture's light over its local median (scores 1).

    Its lengths (box side 16 px) are per 200 px of picture: the generator draws larger images at
    a finer scale.
    """

    source = "peaks"

    def __init__(self):
        self.seen = []

    def detect_boxes(self, images):
        found = []
        for image in images:
            self.seen.append(np.array(image))
            scale = image.shape[0] / 200
            grey = image.astype(np.float64).mean(axis=-1)
            residual = grey - ndimage.median_filter(grey, size=round(15 * scale))
            peaks = residual == ndimage.maximum_filter(residual, size=round(9 * scale))
            rows, columns = np.nonzero(peaks & (residual > 25))
            centres = np.stack([rows, columns], axis=1) + 0.5
            half = 8 * scale
            boxes = np.concatenate([centres - half, centres + half], axis=1)
            found.append(ImageBoxes(boxes, np.zeros(len(boxes)), np.ones(len(boxes))))
        return found


# PSFs of 3-3.5 px per 200 px of image, so that the peak finder's boxes are clump-sized.
FAMILY = RenderFamily(name="test", psf_fwhm=(3.0, 3.5))


@pytest.fixture(scope="module")
def cutouts(tmp_path_factory):
    """Three 200-px synthetic ugriz FITS cutouts and one 400-px one (the detector sees its centre)."""
    folder = tmp_path_factory.mktemp("fits")
    paths, _ = write_synthetic_fits(folder / "small", 3, seed=11, family=FAMILY)
    (large,), _ = write_synthetic_fits(folder / "large", 1, seed=12, image_size=conventions.CUTOUT_SIZE, family=FAMILY)
    return [*paths, large.rename(large.with_name("large_00000.fits"))]


SETTINGS = completeness.InjectionSettings(flux_ratios=(FAINT, BRIGHT), clumps_per_ratio=4, clumps_per_image=2, seed=5)


@pytest.fixture(scope="module")
def measured(cutouts):
    detector = PeakDetector()
    return completeness.measure_completeness(detector, cutouts, min_score=0.5, settings=SETTINGS, batch_size=3), detector


def test_bright_injected_clumps_are_recovered_where_they_were_put_and_faint_ones_are_not(measured):
    result, _ = measured
    injections = result.injections
    bright = injections[injections["flux_ratio"] == BRIGHT]
    faint = injections[injections["flux_ratio"] == FAINT]
    assert len(bright) == 16 and len(faint) == 16
    assert bright["recovered_centre"].all() and bright["recovered_iou"].mean() >= 0.9
    assert faint["recovered_centre"].mean() <= 0.25
    curve = result.summary["by_flux_ratio"]
    assert curve["n"] == [16, 16] and curve["completeness_centre"][1] == 1.0


def test_the_pictures_are_read_images_exactly_and_injection_changes_only_the_clumps(measured, cutouts):
    result, detector = measured
    # One batch of 3 cutouts (their pictures, then their injected copies), then the fourth alone.
    originals = [*detector.seen[:3], detector.seen[3 + 3 * 4]]
    for path, picture in zip(cutouts, originals):
        np.testing.assert_array_equal(picture, read_image(path).rgb)
    copies = [*detector.seen[3 : 3 + 3 * 4], *detector.seen[3 + 3 * 4 + 1 :]]
    injections = result.injections
    # The copies are detected in the order their clumps are listed.
    keys = list(dict.fromkeys(zip(injections["galaxy_id"], injections["flux_ratio"], injections["image"])))
    assert len(copies) == len(keys) == 4 * 2 * 2
    for picture, (galaxy_id, ratio, image) in zip(copies, keys):
        clumps = injections[(injections["galaxy_id"] == galaxy_id) & (injections["flux_ratio"] == ratio)
                            & (injections["image"] == image)]
        original = originals[[path.stem for path in cutouts].index(galaxy_id)]
        fwhm = result.galaxies[result.galaxies["galaxy_id"] == galaxy_id]["fwhm"][0]
        rows, columns = np.mgrid[: picture.shape[0], : picture.shape[1]] + 0.5
        near = np.zeros(picture.shape[:2], bool)
        for x, y in zip(clumps["x"], clumps["y"]):
            near |= np.hypot(columns - x, rows - y) < 6 * fwhm
        np.testing.assert_array_equal(picture[~near], original[~near])
        if ratio == BRIGHT:
            assert np.any(picture[near] != original[near])


def test_clumps_go_on_the_host_inside_the_detectors_view(measured):
    result, _ = measured
    for row in result.galaxies:
        injected = result.injections[result.injections["galaxy_id"] == row["galaxy_id"]]
        boxes = truth_boxes(np.stack([injected["x"], injected["y"]], axis=1), row["fwhm"])
        size = 400 if row["galaxy_id"] == "large_00000" else 200
        y0, x0, y1, x1 = conventions.detector_window(size, size)
        assert boxes[:, 0].min() >= y0 and boxes[:, 1].min() >= x0 and boxes[:, 2].max() <= y1 and boxes[:, 3].max() <= x1
    assert np.all(result.injections["distance_re"] < 5)


def test_the_same_seed_gives_the_same_tables_and_another_seed_others(cutouts, measured):
    result, _ = measured
    again = completeness.measure_completeness(PeakDetector(), cutouts[:1], min_score=0.5, settings=SETTINGS)
    first = result.injections[result.injections["galaxy_id"] == "galaxy_00000"][: len(again.injections)]
    for name in again.injections.colnames:
        np.testing.assert_array_equal(again.injections[name], first[name])
    other = completeness.InjectionSettings(**{**vars(SETTINGS), "seed": 6})
    moved = completeness.measure_completeness(PeakDetector(), cutouts[:1], min_score=0.5, settings=other)
    assert not np.array_equal(moved.injections["x"], again.injections["x"])


def test_outputs_carry_units_curves_and_levels(measured, tmp_path):
    result, _ = measured
    written = completeness.write_completeness(result, tmp_path / "out")
    assert {path.name for path in written.values()} == {"injections.ecsv", "galaxies.ecsv", "completeness.json",
                                                         "completeness.png"}
    galaxies = Table.read(written["galaxies"])
    assert galaxies["host_flux"].unit == "nmgy" and galaxies["completeness_centre"].shape == (4, 2)
    assert galaxies.meta["flux_ratios"] == [FAINT, BRIGHT]
    assert Table.read(written["injections"])["flux"].unit == "nmgy"
    summary = json.loads(written["summary"].read_text())
    assert summary["n_injected"] == 32 and summary["settings"]["psf"] == "gaussian_psf"
    assert [point["level"] for point in summary["flux_ratio_at"]["centre"]] == list(completeness.COMPLETENESS_LEVELS)
    assert len(summary["by_flux_ratio_and_distance_re"]["n"]) == 2
    assert summary["cost"]["detector_pictures"] == 4 + 4 * 2 * 2


def test_matching_by_iou_and_by_centre_is_one_to_one():
    truths = truth_boxes([[50.0, 50.0], [100.0, 100.0]], 3.0)  # side 15
    detections = ImageBoxes(
        [[43.0, 43.5, 57.0, 57.5],       # IoU 0.87 with the first
         [98.0, 98.5, 102.0, 102.5],     # a small box 1.6 px (< 1 FWHM) from the second: centre only
         [42.0, 42.0, 58.0, 58.0]],      # the first again: matched already
        [0, 0, 0], [0.9, 0.8, 0.7])
    recovered = completeness.match_injected(truths, detections, fwhm_px=3.0)
    np.testing.assert_array_equal(recovered["iou"], [True, False])
    np.testing.assert_array_equal(recovered["centre"], [True, True])
    far = ImageBoxes([[96.0, 96.0, 100.0, 100.0]], [0], [0.9])  # centre 2.8 px away: more than 1 FWHM
    assert not completeness.match_injected(truths, far, fwhm_px=2.5)["centre"].any()


def test_flux_ratio_at_interpolates_in_log_ratio():
    ratios = [0.01, 0.04, 0.16]
    assert completeness.flux_ratio_at(ratios, [0.2, 0.6, 0.9], 0.4) == {
        "level": 0.4, "flux_ratio": pytest.approx(0.02), "how": "interpolated"}
    assert completeness.flux_ratio_at(ratios, [0.7, None, 0.9], 0.8)["flux_ratio"] == pytest.approx(0.04)
    assert completeness.flux_ratio_at(ratios, [0.9, 0.95, 1.0], 0.8)["how"] == "below_grid"
    assert completeness.flux_ratio_at(ratios, [0.1, 0.2, 0.3], 0.5) == {"level": 0.5, "flux_ratio": None,
                                                                         "how": "not_reached"}


def test_the_clumpy_fraction_is_corrected_by_the_completeness_at_each_brightest_clump():
    summary = {"by_flux_ratio": {"flux_ratio": [0.05, 0.2], "completeness_centre": [0.5, 0.9]}}
    # Clumpy: 0.1 (C 0.7 by log interpolation) and 0.3 (held at 0.9); not: 0.02 and no clumps.
    fraction = completeness.corrected_clumpy_fraction([[0.02, 0.1], [0.3], [0.02], []], summary)
    assert fraction["observed"] == 0.5 and fraction["n_clumpy"] == 2
    assert fraction["corrected"] == pytest.approx((1 / 0.7 + 1 / 0.9) / 4)


def test_settings_refuse_what_cannot_be_injected():
    for options in ({"flux_ratios": (0.3, 0.1)}, {"flux_ratios": (0.0, 0.1)}, {"clumps_per_image": 0},
                    {"max_size_fwhm": -1.0}):
        with pytest.raises(ValueError):
            completeness.InjectionSettings(**options)


def test_the_detector_window_is_the_crop_model_inputs_take():
    for height, width in ((400, 400), (200, 200), (300, 256)):
        images = np.zeros((1, height, width, 3), np.uint8)
        _, offset, scale = data.model_inputs(images, image_size=64)
        y0, x0, y1, x1 = conventions.detector_window(height, width)
        np.testing.assert_allclose(offset.numpy(), [y0, x0])
        np.testing.assert_allclose(scale.numpy(), [64 / (y1 - y0), 64 / (x1 - x0)])


def test_the_command_line_defaults_mirror_the_modules():
    low, high = completeness_command._FLUX_RATIO_RANGE
    np.testing.assert_allclose(np.geomspace(low, high, completeness_command._N_FLUX_RATIOS),
                               completeness.DEFAULT_FLUX_RATIOS)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from test_detector import save_run_dir

    return save_run_dir(tmp_path_factory.mktemp("runs") / "run", validation_threshold=0.3)


def test_the_command_writes_the_selection_function(run_dir, cutouts, tmp_path, capsys):
    out = tmp_path / "selection"
    arguments = ["--model", str(run_dir), "--inputs", str(cutouts[0].parent / "*.fits"), "--out", str(out),
                 "--n-flux-ratios", "2", "--clumps-per-ratio", "2", "--psf", "moffat", "--colour", "u-g=0.5:0.6"]
    assert cli.main(["completeness", *arguments]) == 0
    printed = capsys.readouterr().out
    assert "12 clumps injected into 3 of 3 galaxies (score >= 0.30)" in printed
    summary = json.loads((out / "completeness.json").read_text())
    assert summary["settings"]["psf"] == "moffat_psf(beta=3)"
    assert summary["settings"]["colour_ranges"]["u-g"] == [0.5, 0.6]
    assert (out / "completeness.png").stat().st_size > 10_000


def test_the_command_refuses_inputs_it_cannot_inject_into_with_one_line(run_dir, cutouts, tmp_path, capsys):
    png = tmp_path / "galaxy.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    for inputs, message in (([str(cutouts[0])], "bands g, r, i, u, z lack y"),
                            ([str(png)], "galaxy.png"),
                            ([str(tmp_path / "none*.fits")], "no such file")):
        flag = ["--flag-band", "y"] if "lack y" in message else []
        code = cli.main(["completeness", "--model", str(run_dir), "--inputs", *inputs, "--out", str(tmp_path), *flag])
        error = capsys.readouterr().err
        assert code == 2 and message in error and error.count("\n") == 1, error
    assert not (tmp_path / "completeness.json").exists()


def test_band_options_supply_what_the_headers_lack(cutouts, tmp_path):
    bare = tmp_path / "bare.fits"
    with fits.open(cutouts[0]) as hdul:
        for hdu in hdul[1:]:
            hdu.header.remove("MAGZP", ignore_missing=True)
        hdul.writeto(bare)
    with pytest.raises(ValueError, match=r"^bare.fits: band 'u' has no zero point"):
        completeness.check_inputs([bare])
    completeness.check_inputs([bare], band_options={"zero_point": 22.5})


@pytest.mark.slow
def test_a_clump_injected_at_30_percent_is_recovered_by_a_trained_model(tmp_path, synthetic_small_data_dir):
    from gsfc_tf import config, trainer
    from gsfc_tf.detector import default_min_score, load_detector

    run = trainer.train(config.smoke_training(), tmp_path / "run", data_dir=synthetic_small_data_dir, progress=False)
    assert_recovers_bright_clumps(load_detector(run.run_dir), tmp_path)


def assert_recovers_bright_clumps(detector, folder):
    """A trained detector finds most clumps at 30 % of their host's u light, few at 0.05 %, on test galaxies."""
    from gsfc_tf.detector import default_min_score

    paths, _ = write_synthetic_fits(folder / "fits", 12, seed=2)  # the synthetic test split's seed
    settings = completeness.InjectionSettings(flux_ratios=(FAINT, BRIGHT), clumps_per_ratio=6, seed=0)
    result = completeness.measure_completeness(detector, paths, min_score=default_min_score(detector), settings=settings)
    recovered = result.summary["by_flux_ratio"]["completeness_centre"]
    assert recovered[1] >= 0.7 and recovered[0] <= 0.3, recovered


def test_injection_and_the_selection_function_import_no_tensorflow():
    code = ("import sys, gsfc_tf.completeness, gsfc_tf.injection; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
