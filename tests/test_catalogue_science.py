"""Host mask and clump photometry in catalogue rows (`catalogue.catalogue_galaxy`), against the generator's truth.

The detector is left out: truth boxes go through the row-building function `predict_catalogue` and
the survey use, so the photometry is tested at the true clump positions (an untrained detector's
boxes are random). The CLI wiring is tested in test_evaluate_predict_cli.py and test_survey.py.
"""

import dataclasses
import math

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from PIL import Image

from gsfc_tf import conventions
from gsfc_tf.catalogue import (
    PHOTOMETRY_BANDS,
    CatalogueRow,
    ScienceImage,
    catalogue_galaxy,
    read_cutout,
    read_galaxy,
    read_science,
)
from gsfc_tf.evaluation import ImageBoxes
from gsfc_tf.host import detection_image, segment_host
from gsfc_tf.images import UnreadableImageError
from gsfc_tf.photometry import clump_photometry
from tfds_clumpscout.clump_scout.synthetic_fits import truth_boxes, write_synthetic_fits

_N_GALAXIES = 16  # test_science_synthetic's fixture: seed 2026, 200 px


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    paths, truth_path = write_synthetic_fits(tmp_path_factory.mktemp("catalogue_science"), _N_GALAXIES, seed=2026)
    return paths, Table.read(truth_path)


def _catalogue(path, truth, host_mask="flag"):
    cutout = read_cutout(path)
    return catalogue_galaxy(path.stem, truth_boxes(truth, path.name), read_science(path, cutout.image), wcs=cutout.wcs,
                            host_mask=host_mask)


@pytest.fixture(scope="module")
def measured(synthetic):
    """The truth table's rows and, aligned with them, the catalogue rows made from the truth boxes."""
    paths, truth = synthetic
    measured_rows, images = [], []
    for path in paths:
        rows = truth[truth["file"] == path.name]
        galaxy = _catalogue(path, truth)
        assert len(galaxy.rows) == len(rows)
        measured_rows += galaxy.rows
        if len(rows):
            images.append((galaxy.image_columns, rows["host_x"][0], rows["host_y"][0]))
    return truth, measured_rows, images


# Measured here (10 normal clumps with r-band box SNR > 10): the same as photometry at the true
# centres in test_science_synthetic (resolved photometry), so the catalogue adds no error.
_MEDIAN_ABS = {"u": 0.065, "g": 0.042, "r": 0.030, "i": 0.061, "z": 0.106}


@pytest.mark.parametrize("band", PHOTOMETRY_BANDS)
def test_catalogue_fluxes_match_the_truth(measured, band):
    truth, rows, _ = measured
    bright = np.asarray((truth["snr_r"] > 10) & (truth["label"] == 0))
    flux = np.array([getattr(row, f"flux_{band}") for row in rows])
    errors = (flux / np.asarray(truth[f"flux_{band}"]) - 1)[bright]
    assert len(errors) == 10
    assert np.median(np.abs(errors)) == pytest.approx(_MEDIAN_ABS[band], abs=0.005)
    assert abs(np.median(errors)) < 0.05
    # Magnitudes, errors, host fluxes and ratios come with the flux.
    mag = np.array([getattr(row, f"mag_{band}") for row in rows])[bright]
    np.testing.assert_allclose(mag, 22.5 - 2.5 * np.log10(flux[bright]))
    assert all(getattr(row, f"flux_err_{band}") > 0 for row in rows)
    host_flux = np.array([getattr(row, f"host_flux_{band}") for row in rows])
    # Measured: host Kron fluxes 0.96-1.0 of the truth's (host module docstring).
    assert np.median(host_flux / np.asarray(truth[f"host_flux_{band}"])) == pytest.approx(0.98, abs=0.03)
    np.testing.assert_allclose([getattr(row, f"flux_ratio_{band}") for row in rows], flux / host_flux)


def test_catalogue_rows_are_clump_photometry_at_the_box_centres(synthetic):
    # Alignment and frames: each row carries the photometry of its own clump, measured in the
    # stored FITS arrays at its box centre (image -> FITS pixels), with the host of the bands'
    # detection image.
    paths, truth = synthetic
    path = paths[1]
    rows = truth[truth["file"] == path.name]
    catalogue_rows = _catalogue(path, truth).rows
    science = read_science(path, read_cutout(path).image)
    bands = science.bands
    host = segment_host(detection_image(bands.images.values()), fwhm_px=bands.psf_fwhm_px["r"])
    centres = np.stack(conventions.image_to_fits_pixels(rows["x"], rows["y"], height=200), axis=1)
    table = clump_photometry(bands.images, centres, fwhm_px=bands.psf_fwhm_px, zero_point=bands.zero_points,
                             gain=bands.gains, psf_images=bands.psf_images, host=host, resolved=True, wcs=bands.wcs)
    for name in ("flux_u", "flux_err_r", "mag_z", "host_flux_g", "flux_ratio_u", "g_r", "size", "distance", "distance_re",
                 "distance_arcsec"):
        np.testing.assert_allclose([getattr(row, name) for row in catalogue_rows], table[name], rtol=1e-6, err_msg=name)
    assert [row.is_clump_3pct for row in catalogue_rows] == list(table["is_clump_3pct"])
    assert [row.merged_id for row in catalogue_rows] == list(range(len(rows)))


def test_flags_and_host_columns(measured):
    truth, rows, images = measured
    bright = np.asarray(truth["snr_r"] > 10)
    flags = np.array([row.is_clump_8pct for row in rows])
    # As in test_science_synthetic: the u-band 8 % flag agrees with the truth for all here.
    assert np.mean((flags == np.asarray(truth["flux_ratio_u"] > 0.08))[bright]) >= 0.95
    assert all(image["host_flag"] == "" and image["photometry_note"] == "" for image, _, _ in images)
    # Host centroids in image coordinates (y down): near the generator's host centre (measured
    # median 0.64 px in the arrays' frame, test_science_synthetic).
    offsets = [np.hypot(image["host_x"] - x, image["host_y"] - y) for image, x, y in images]
    assert len(offsets) == _N_GALAXIES and np.median(offsets) < 0.65
    # Measured: every truth box's centre on the host (test_science_synthetic).
    assert not any(row.off_host for row in rows)


def test_host_mask_drops_flags_or_keeps_off_host_detections(synthetic):
    paths, truth = synthetic
    path = paths[0]
    # One true clump and a detection in the corner's sky, off the host.
    boxes = np.concatenate([truth_boxes(truth, path.name).boxes_yxyx[:1], [[2.0, 2.0, 12.0, 12.0]]])
    detections = ImageBoxes(boxes, np.array([0, 0]), np.array([0.9, 0.8]))
    cutout = read_cutout(path)
    science = read_science(path, cutout.image)
    dropped, flagged, off = (
        catalogue_galaxy("g", detections, science, wcs=cutout.wcs, host_mask=mode) for mode in ("drop", "flag", "off")
    )
    assert [row.score for row in dropped.rows] == [0.9] and dropped.image_columns["n_off_host"] == 1
    assert [row.off_host for row in flagged.rows] == [False, True] and flagged.image_columns["n_off_host"] == 1
    assert [row.off_host for row in off.rows] == [False, False]
    assert {row.host_flag for row in off.rows} == {"not_segmented"} and off.image_columns["host_flag"] == "not_segmented"
    assert math.isnan(off.rows[0].flux_ratio_u) and off.rows[0].flux_u > 0  # photometry without a host
    assert dropped.rows[0] == flagged.rows[0]


def test_a_galaxy_without_a_host_has_every_detection_off_it():
    detections = ImageBoxes([[90.0, 90.0, 110.0, 110.0]], [0], [0.9])
    science = ScienceImage(np.full((200, 200), np.nan), None, 3.5, "no bands (PNG/JPEG)")
    flagged = catalogue_galaxy("g", detections, science, host_mask="flag")
    assert [row.host_flag for row in flagged.rows] == ["no_valid_pixels"] and flagged.rows[0].off_host
    assert flagged.image_columns["host_flag"] == "no_valid_pixels" and math.isnan(flagged.image_columns["host_x"])
    dropped = catalogue_galaxy("g", detections, science)  # the default, drop
    assert dropped.rows == [] and dropped.image_columns["n_off_host"] == 1


def test_pictures_get_host_columns_and_no_photometry(tmp_path):
    # A bright disc at the centre, a blob in the corner.
    yy, xx = np.mgrid[:120, :120]
    light = 200 * np.exp(-((xx - 60) ** 2 + (yy - 60) ** 2) / (2 * 15**2)) + 200 * np.exp(-((xx - 10) ** 2 + (yy - 10) ** 2) / 8)
    noise = np.random.default_rng(0).normal(0, 2, light.shape)
    Image.fromarray(np.clip(light + 10 + noise, 0, 255).astype(np.uint8)).convert("RGB").save(tmp_path / "g.png")
    cutout = read_cutout(tmp_path / "g.png")
    science = read_science(tmp_path / "g.png", cutout.image)
    assert science.bands is None and science.note == "no bands (PNG/JPEG)"
    detections = ImageBoxes([[55.0, 55.0, 65.0, 65.0], [5.0, 5.0, 15.0, 15.0]], [0, 1], [0.9, 0.8])
    galaxy = catalogue_galaxy("g", detections, science, host_mask="flag")
    assert [row.off_host for row in galaxy.rows] == [False, True]
    columns = galaxy.image_columns
    assert columns["host_flag"] == "" and columns["host_x"] == pytest.approx(60.5, abs=1)
    assert columns["host_y"] == pytest.approx(60.5, abs=1) and columns["host_axis_ratio"] > 0.9
    row = galaxy.rows[0]
    photometry = [f.name for f in dataclasses.fields(CatalogueRow) if f.name.startswith(("flux", "mag", "host_flux"))]
    assert all(math.isnan(getattr(row, name)) for name in photometry) and row.merged_id == -1


def test_pictures_host_mask_keeps_most_true_clumps(synthetic, tmp_path):
    # The detector's RGB view of each galaxy as a PNG: the host on its luminance, sky estimated.
    paths, truth = synthetic
    off_host = []
    for path in paths:
        picture = tmp_path / f"{path.stem}.png"
        Image.fromarray(read_cutout(path).image).save(picture)
        cutout = read_cutout(picture)
        galaxy = catalogue_galaxy("g", truth_boxes(truth, path.name), read_science(picture, cutout.image), host_mask="flag")
        assert galaxy.image_columns["host_flag"] == ""
        off_host += [row.off_host for row in galaxy.rows]
    # Measured 32 of 33 here (0.989 on 150 galaxies, `gsfc_tf.host`; 0.82 here with the crop's
    # clipped median for the sky and the 1-sigma isophote).
    assert np.mean(np.logical_not(off_host)) == pytest.approx(32 / 33)


def test_fits_boxes_take_their_side_from_the_psf_pictures_keep_the_model_s(synthetic, tmp_path):
    paths, truth = synthetic
    path = paths[0]
    rows = truth[truth["file"] == path.name]
    cutout = read_cutout(path)
    science = read_science(path, cutout.image)
    detections = ImageBoxes([[60.0, 60.0, 100.0, 110.0]], [0], [0.9])  # 40 x 50 px: not the PSF's side
    (row,) = catalogue_galaxy("g", detections, science, host_mask="off").rows
    side = conventions.BOX_SIDE_PER_PSF_FWHM * science.fwhm_px
    assert science.fwhm_px == pytest.approx(float(rows["psf_fwhm"][0]), rel=1e-5)
    assert (row.x_max - row.x_min, row.y_max - row.y_min) == (pytest.approx(side), pytest.approx(side))
    assert (row.x_centre, row.y_centre) == (pytest.approx(85.0), pytest.approx(80.0))
    # At the image's edge the square is clipped; the detection's position stays where it was.
    (edge,) = catalogue_galaxy("g", ImageBoxes([[60.0, 194.0, 70.0, 200.0]], [0], [0.9]), science, host_mask="off").rows
    assert (edge.x_max, edge.x_centre, edge.y_centre) == (200.0, pytest.approx(197.0), pytest.approx(65.0))
    Image.fromarray(cutout.image).save(tmp_path / "g.png")
    picture = read_science(tmp_path / "g.png", cutout.image)
    (row,) = catalogue_galaxy("g", detections, picture, host_mask="off").rows
    assert (row.x_max - row.x_min, row.y_max - row.y_min) == (50.0, 40.0)


def _rewritten(path, destination, change):
    """A copy of a FITS cutout with `change(hdus)` applied to its list of HDUs."""
    with fits.open(path) as hdul:
        hdus = [hdu.copy() for hdu in hdul]
    fits.HDUList(change(hdus)).writeto(destination)
    return destination


def _without_zero_points(hdus):
    for hdu in hdus:
        hdu.header.remove("MAGZP", ignore_missing=True)
    return hdus


def test_read_galaxy_is_read_cutout_and_read_science_opening_a_file_once(synthetic, tmp_path, monkeypatch):
    paths, _ = synthetic
    path = paths[0]
    picture = tmp_path / "g.png"
    Image.fromarray(read_cutout(path).image).save(picture)
    no_zero_points = _rewritten(path, tmp_path / "no_zero_points.fits", _without_zero_points)  # no photometry
    for cutout_path in (path, picture, no_zero_points):
        cutout, science = read_galaxy(cutout_path)
        expected = read_cutout(cutout_path)
        expected_science = read_science(cutout_path, expected.image)
        np.testing.assert_array_equal(cutout.image, expected.image)
        assert cutout.n_bad_pixels == expected.n_bad_pixels
        assert (cutout.wcs is None) == (expected.wcs is None)
        if cutout.wcs is not None:
            np.testing.assert_array_equal(cutout.wcs.pixel_to_world_values(10.0, 20.0),
                                          expected.wcs.pixel_to_world_values(10.0, 20.0))
        np.testing.assert_array_equal(science.detection, expected_science.detection)
        assert (science.fwhm_px, science.note) == (expected_science.fwhm_px, expected_science.note)
        assert (science.bands is None) == (expected_science.bands is None)
        if science.bands is not None:
            for band, image in science.bands.images.items():
                np.testing.assert_array_equal(image, expected_science.bands.images[band])
    # A file with named bands is opened once for its picture and its bands.
    opened = []
    open_fits = fits.open
    monkeypatch.setattr(fits, "open", lambda *args, **kwargs: opened.append(args[0]) or open_fits(*args, **kwargs))
    read_galaxy(path)
    assert opened == [path]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda hdus: [hdu for hdu in hdus if hdu.header.get("FILTER", "").strip().lower() != "i"], "lacks i"),
        (lambda hdus: [hdu.__class__(np.full_like(hdu.data, np.nan), hdu.header) if hdu.data is not None else hdu
                       for hdu in hdus], "no finite pixel values"),
    ],
)
def test_read_galaxy_says_why_a_cutout_with_named_bands_is_unreadable(synthetic, tmp_path, change, message):
    # read_bands reads these bands; the picture cannot be made: read_cutout's error.
    path = _rewritten(synthetic[0][0], tmp_path / "bad.fits", change)
    with pytest.raises(UnreadableImageError, match=message):
        read_cutout(path)
    with pytest.raises(UnreadableImageError, match=message):
        read_galaxy(path)
