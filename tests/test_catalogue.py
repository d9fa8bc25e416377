"""Tests for gsfc_tf.catalogue: WCS pixel conventions, cutout reading, path expansion, catalogue writers."""

import dataclasses
import logging
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from PIL import Image

from gsfc_tf.catalogue import (
    CatalogueRow,
    ImageStatusRow,
    catalogue_format,
    check_output_file,
    expand_image_paths,
    galaxy_id,
    image_status,
    image_table_path,
    iter_cutouts,
    pixel_to_world,
    read_cutout,
    rows_from_detections,
    unique_galaxy_ids,
    write_catalogue,
    write_image_table,
)
from gsfc_tf.evaluation import ImageBoxes
from gsfc_tf.images import UnreadableImageError

ARCSEC = 1 / 3600


def tan_header(width=100, height=80, planes=None):
    """A TAN WCS, 1"/px, north up and east left, whose reference point is the image centre."""
    shape = (height, width) if planes is None else (planes, height, width)
    header = fits.PrimaryHDU(np.zeros(shape, np.float32)).header
    header.update(
        CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CUNIT1="deg", CUNIT2="deg", CRVAL1=150.0, CRVAL2=2.0,
        CRPIX1=(width + 1) / 2, CRPIX2=(height + 1) / 2, CD1_1=-ARCSEC, CD1_2=0.0, CD2_1=0.0, CD2_2=ARCSEC,
    )
    return header


def test_pixel_to_world_hand_made_tan_wcs():
    header = tan_header(width=100, height=80)
    # The centre of the image (continuous (50, 40)) is the reference point.
    ra, dec = pixel_to_world(header, 50.0, 40.0)
    assert ra == pytest.approx(150.0, abs=1e-12) and dec == pytest.approx(2.0, abs=1e-12)
    # 10 px up in the image (y decreases) is 10" north: dec = dec0 + atan(10"), exact along the meridian.
    ra, dec = pixel_to_world(header, 50.0, 30.0)
    assert ra == pytest.approx(150.0, abs=1e-12) and dec == pytest.approx(2.0 + 10 * ARCSEC, abs=1e-10)
    # 10 px right is 10" west: RA falls by 10" / cos(dec) (to first order).
    ra, dec = pixel_to_world(header, 60.0, 40.0)
    assert (150.0 - ra) * math.cos(math.radians(2.0)) == pytest.approx(10 * ARCSEC, rel=1e-6)
    # The centre of the bottom-left image pixel is FITS pixel (1, 1).
    expected = WCS(header).all_pix2world([[1.0, 1.0]], 1)[0]
    np.testing.assert_allclose(pixel_to_world(header, 0.5, 79.5), expected, atol=1e-12)
    with pytest.raises(ValueError, match="image_height"):
        pixel_to_world(WCS(naxis=2), 0.0, 0.0)


def test_fits_cutout_round_trip_orientation_and_wcs(tmp_path):
    planes = np.zeros((3, 80, 100), np.float32)
    planes[:, 0, 7] = 50.0  # FITS row 0 is the bottom of the sky image
    path = tmp_path / "galaxy.fits"
    fits.PrimaryHDU(planes, header=tan_header(planes=3)).writeto(path)
    image, wcs, n_bad_pixels = read_cutout(path)
    assert image.dtype == np.uint8 and image.shape == (80, 100, 3) and n_bad_pixels == 0
    assert image[79, 7].min() > 0 and image[:79].max() == 0  # shown as the bottom image row
    assert wcs is not None and wcs.pixel_shape == (100, 80)
    # A detection centred on that pixel.
    box = ImageBoxes([[79.0, 7.0, 80.0, 8.0]], [1], [0.75])
    (row,) = rows_from_detections("g1", box, wcs=wcs)
    assert (row.x_centre, row.y_centre, row.class_name, row.class_id) == (7.5, 79.5, "odd_clump", 1)
    expected = WCS(tan_header()).all_pix2world([[7.0, 0.0]], 0)[0]  # the pixel's centre in FITS terms
    np.testing.assert_allclose([row.ra, row.dec], expected, atol=1e-10)


def test_single_plane_fits_is_grey_and_header_without_wcs_gives_none(tmp_path):
    path = tmp_path / "grey.fit"
    fits.PrimaryHDU(np.random.default_rng(0).uniform(0, 5, (20, 30))).writeto(path)
    image, wcs, _ = read_cutout(path)
    assert image.shape == (20, 30, 3) and wcs is None
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_png_and_jpeg_read_as_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    Image.fromarray(np.dstack([rgb, np.full((40, 30), 255, np.uint8)])).save(tmp_path / "rgba.png")
    image, wcs, _ = read_cutout(tmp_path / "a.png")
    np.testing.assert_array_equal(image, rgb)
    assert wcs is None
    assert read_cutout(tmp_path / "grey.png")[0].shape == (40, 30, 3)
    np.testing.assert_array_equal(read_cutout(tmp_path / "rgba.png")[0], rgb)


def test_unreadable_inputs_are_reported_and_skipped(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(good)
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    (tmp_path / "junk.fits").write_bytes(b"SIMPLE  = junk")
    table_only = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(Table({"a": [1, 2]}))]).writeto(table_only)
    bad = [tmp_path / "junk.jpg", tmp_path / "missing.png", tmp_path / "junk.fits", table_only]
    for path in bad:
        with pytest.raises(UnreadableImageError, match=path.name):
            read_cutout(path)
    errors = []
    read = list(iter_cutouts([bad[0], good, *bad[1:]], on_error=lambda p, e: errors.append(p)))
    assert [p for p, _, _ in read] == [good] and errors == bad


def test_iter_cutouts_logs_a_warning_by_default(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="gsfc_tf.catalogue"):
        assert list(iter_cutouts([tmp_path / "missing.png"])) == []
    assert "missing.png" in caplog.text


def test_rows_from_detections_keep_scores_at_the_operating_threshold():
    detections = ImageBoxes([[10, 20, 26, 36], [50, 60, 60, 70], [0, 0, 9, 9]], [0, 1, 0], [0.9, 0.4, 0.39])
    rows = rows_from_detections("g", detections, min_score=0.4)
    assert [row.score for row in rows] == pytest.approx([0.9, 0.4])


@pytest.mark.parametrize("format", ["csv", "fits"])
def test_write_catalogue_round_trip(tmp_path, format):
    # Boxes in the cutout: the central crop's (10, 20, 26, 36) and (50, 60, 60, 70), 100 px in.
    detections = ImageBoxes([[110, 120, 126, 136], [150, 160, 160, 170]], [0, 1], [0.9, 0.4])
    rows = rows_from_detections("J0931+0203", detections)
    assert math.isnan(rows[0].ra) and math.isnan(rows[0].dec)
    path = write_catalogue(rows, tmp_path / "sub" / f"cat.{format}", format=format)
    table = Table.read(path, format="ascii.csv" if format == "csv" else "fits")
    assert table.colnames[:12] == [
        "galaxy_id", "x_min", "y_min", "x_max", "y_max", "x_centre", "y_centre", "class_name", "class_id",
        "score", "ra", "dec",
    ]
    assert table.colnames == [field.name for field in dataclasses.fields(CatalogueRow)]
    assert list(table["galaxy_id"]) == ["J0931+0203"] * 2 and list(table["class_name"]) == ["clump", "odd_clump"]
    np.testing.assert_allclose(table["x_min"], [120, 160])
    np.testing.assert_allclose(table["y_centre"], [118, 155])
    np.testing.assert_allclose(table["score"], [0.9, 0.4])
    assert np.isnan(np.asarray(table["ra"], float)).all()
    if format == "fits":
        assert str(table["dec"].unit) == "deg" and str(table["x_min"].unit) == "pix"


def test_fits_catalogue_reads_back_its_units_without_a_warning(tmp_path):
    # nmgy is no FITS-standard unit: as a TUNIT it made astropy's reader warn (UnitsWarning).
    rows = rows_from_detections("g", ImageBoxes([[110, 120, 126, 136]], [0], [0.9]))
    row = dataclasses.replace(rows[0], flux_u=1.5, mag_u=22.06)
    path = write_catalogue([row], tmp_path / "cat.fits", format="fits")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = Table.read(path)
    assert table["flux_u"].unit == u.nmgy and table["flux_u"][0] == 1.5
    assert table["mag_u"].unit == u.mag and table["distance_re"].unit == u.dimensionless_unscaled
    # Readers other than astropy get the standard units from TUNIT.
    header = fits.getheader(path, 1)
    units = {header[f"TTYPE{k}"]: header.get(f"TUNIT{k}") for k in range(1, header["TFIELDS"] + 1)}
    assert units["mag_u"] == "mag" and units["x_min"] == "pix" and units["ra"] == "deg"


def test_write_empty_catalogue_and_bad_format(tmp_path):
    table = Table.read(write_catalogue([], tmp_path / "empty.fits", format="fits"))
    assert len(table) == 0 and "score" in table.colnames
    with pytest.raises(ValueError, match="format"):
        write_catalogue([CatalogueRow("g", 0, 0, 1, 1, 0.5, 0.5, "clump", 0, 1.0)], tmp_path / "x", format="xls")


def test_unique_galaxy_ids_keep_stems_and_tell_colliding_files_apart(tmp_path, monkeypatch):
    lone, png, jpg, nested = (tmp_path / name for name in ("J0931+0203.fits.gz", "good.png", "good.jpg", "sub/good.png"))
    ids = unique_galaxy_ids([lone, png, jpg, nested])
    assert ids == ["J0931+0203", "good.png", "good.jpg", "sub/good.png"]
    # Relative and absolute spellings of one folder give the same ids.
    monkeypatch.chdir(tmp_path)
    assert unique_galaxy_ids(["good.png", "./sub/good.png"]) == ["good.png", "sub/good.png"]
    # A path id that meets another file's stem makes that file path-named too.
    tricky = [tmp_path / "good.png", tmp_path / "good.jpg", tmp_path / "good.png.fits"]
    assert unique_galaxy_ids(tricky) == ["good.png", "good.jpg", "good.png.fits"]
    assert unique_galaxy_ids(["gs://b/x/g.png", "gs://b/y/g.png"]) == ["x/g.png", "y/g.png"]
    with pytest.raises(ValueError, match="listed twice"):
        unique_galaxy_ids([png, tmp_path / "sub" / ".." / "good.png"])


@pytest.mark.parametrize("format", ["csv", "fits"])
def test_write_image_table_round_trip(tmp_path, format):
    rows = [
        ImageStatusRow("g0", "in/g0.png", "detected", n_clumps=3),
        ImageStatusRow("g1", "in/g1.png", "no_clumps"),
        ImageStatusRow("bad", "in/bad.png", "unreadable", reason="in/bad.png: cannot identify image file"),
    ]
    path = write_image_table(rows, image_table_path(tmp_path / f"clumps.{format}"), format=format)
    assert path.name == f"clumps.images.{format}"
    table = Table.read(path, format="ascii.csv" if format == "csv" else "fits")
    assert table.colnames[:6] == ["galaxy_id", "path", "status", "reason", "n_clumps", "n_bad_pixels"]
    assert table.colnames == [field.name for field in dataclasses.fields(ImageStatusRow)]
    assert list(table["status"]) == ["detected", "no_clumps", "unreadable"]
    assert list(table["n_clumps"]) == [3, 0, 0] and table["reason"][2] == rows[2].reason


def test_image_status_rows_are_consistent():
    with pytest.raises(ValueError, match="status must be one of"):
        ImageStatusRow("g", "g.png", "missing")
    with pytest.raises(ValueError, match="reason"):
        ImageStatusRow("g", "g.png", "unreadable")
    with pytest.raises(ValueError, match="0 clumps"):
        ImageStatusRow("g", "g.png", "detected")


def test_check_output_file_refuses_directories_and_unwritable_places(tmp_path):
    assert check_output_file(tmp_path / "new" / "deeper" / "clumps.csv") == tmp_path / "new" / "deeper" / "clumps.csv"
    with pytest.raises(ValueError, match="is a directory"):
        check_output_file(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        check_output_file(tmp_path / "file" / "clumps.csv")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        with pytest.raises(ValueError, match="not writable"):
            check_output_file(locked / "clumps.csv")


def test_galaxy_ids_and_globs(tmp_path):
    assert galaxy_id("a/587722981.fits.gz") == "587722981"
    assert galaxy_id("J1234.5+0101.png") == "J1234.5+0101"
    for name in ("b.png", "a.png", "c.fits"):
        (tmp_path / name).touch()
    pattern, missing = str(tmp_path / "*.png"), str(tmp_path / "none*.png")
    # Globs expand sorted; a plain path and a pattern matching nothing stay, for the reader to report.
    assert expand_image_paths([pattern, "x.fits", missing]) == [
        tmp_path / "a.png", tmp_path / "b.png", Path("x.fits"), Path(missing)
    ]


def test_expand_image_paths_keeps_a_file_named_twice_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a.png", "b.png"):
        (tmp_path / name).touch()
    assert expand_image_paths(["*.png", "a.png", "./b.png", "c.png"]) == [Path("a.png"), Path("b.png"), Path("c.png")]


def test_nan_pixels_are_counted_and_images_without_data_are_unreadable(tmp_path):
    planes = np.ones((3, 20, 30), np.float32)
    planes[0, :5, :4] = np.nan  # 20 pixels bad in g
    planes[2, 0, :4] = np.inf  # 4 of them again in i, plus none new
    planes[1, 19, 29] = -np.inf  # one more in r
    fits.PrimaryHDU(planes).writeto(tmp_path / "holes.fits")
    image, _, n_bad_pixels = read_cutout(tmp_path / "holes.fits")
    assert n_bad_pixels == 21
    # Drawn black, as the FITS row order puts them: the last image rows and the first column block.
    assert image[-5:, :4].max() == 0 and image[5:-5, 5:].min() > 0
    fits.PrimaryHDU(np.full((3, 20, 30), np.nan, np.float32)).writeto(tmp_path / "empty.fits")
    with pytest.raises(UnreadableImageError, match="empty.fits: no finite pixel values"):
        read_cutout(tmp_path / "empty.fits")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "dot.png")
    Image.fromarray(np.zeros((15, 300, 3), np.uint8)).save(tmp_path / "strip.png")
    for name, size in (("dot.png", "1x1"), ("strip.png", "300x15")):
        with pytest.raises(UnreadableImageError, match=f"{name}: {size} px is too small"):
            read_cutout(tmp_path / name)


def test_non_utf8_file_names_become_printable_ids_and_rows(tmp_path):
    name = os.fsdecode(b"bad\xff.png")
    rows = [image_status(gid, tmp_path / name) for gid in unique_galaxy_ids([tmp_path / name])]
    assert rows[0].galaxy_id == "bad\\xff" and rows[0].path.endswith("bad\\xff.png")
    unreadable = image_status("g", name, reason=f"{name}: cannot identify image file")
    assert unreadable.reason == "bad\\xff.png: cannot identify image file"
    for format in ("csv", "fits"):  # writers accept them: lone surrogates made both fail
        write_image_table([*rows, unreadable], tmp_path / f"images.{format}", format=format)


def test_catalogue_format_follows_the_name_and_refuses_contradictions():
    assert catalogue_format("a.csv") == "csv" and catalogue_format("a.FITS") == "fits"
    assert catalogue_format("a.fit") == "fits" and catalogue_format("a") == "csv"
    assert catalogue_format("a.txt", "fits") == "fits"
    with pytest.raises(ValueError, match="x.csv names a csv file but the format is fits"):
        catalogue_format("x.csv", "fits")
    with pytest.raises(ValueError, match="x.fits names a fits file but the format is csv"):
        catalogue_format("x.fits", "csv")


def test_check_output_file_never_replaces_a_cutout(tmp_path):
    cutout = tmp_path / "a.fits"
    fits.PrimaryHDU(np.ones((3, 8, 8), np.float32)).writeto(cutout)
    other_image = tmp_path / "b.fits"
    fits.PrimaryHDU(np.ones((8, 8), np.float32)).writeto(other_image)
    old_table = tmp_path / "old.fits"
    write_catalogue([], old_table, format="fits")
    for path, message in (
        (tmp_path / "a.png", "is an image name"),
        (tmp_path / "new" / "c.JPG", "is an image name"),
        (cutout, "is one of the input images"),
        (tmp_path / "sub" / ".." / "a.fits", "is one of the input images"),
        (other_image, "holds a FITS image"),
    ):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(ValueError, match=message):
            check_output_file(path, inputs=[cutout])
    assert check_output_file(old_table, inputs=[cutout]) == old_table  # a table may be replaced


def test_one_matcher_walks_every_folder_once_through_links(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a.png", "sub/b.png", "sub/deeper/c.png", ".hidden/h.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    (tmp_path / "sub" / "loop").symlink_to(tmp_path)  # Python's glob follows this ~40 levels deep
    expected = [Path("a.png"), Path("sub/b.png"), Path("sub/deeper/c.png")]
    assert expand_image_paths(["**/*.png"]) == expected
    assert expand_image_paths(["**.png"]) == [Path("a.png")]  # `**` inside a name is `*`, as in glob
    assert expand_image_paths([str(tmp_path / "sub" / "**" / "*.png")]) == [
        tmp_path / "sub" / "b.png", tmp_path / "sub" / "deeper" / "c.png", tmp_path / "sub" / "loop" / "a.png"
    ]
    # A second link to a folder already walked adds no file twice: the first spelling is kept.
    (tmp_path / "again").symlink_to(tmp_path / "sub")
    assert expand_image_paths(["**/*.png"]) == [Path("a.png"), Path("again/b.png"), Path("again/deeper/c.png")]
