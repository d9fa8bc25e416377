"""Named bands of multi-band FITS cutouts: `gsfc_tf.bands.read_bands` and `images.read_image`'s g, r, i by name."""

import numpy as np
import pytest
from astropy.io import fits

from gsfc_tf.bands import BandReadError, read_bands
from gsfc_tf.images import UnreadableImageError, read_image
from tfds_clumpscout.clump_scout.synthetic_fits import NANOMAGGIES_PER_UNIT, write_synthetic_fits

_SIZE = 48


@pytest.fixture(scope="module")
def galaxy(tmp_path_factory):
    paths, _ = write_synthetic_fits(tmp_path_factory.mktemp("bands"), 1, seed=11, image_size=_SIZE)
    return paths[0]


def _rewrite(source, destination, order, *, edit=None):
    """Copies `source` with its band HDUs in `order` (names any case), without its PSF images;
    `edit(band, hdu)` may change one."""
    with fits.open(source) as hdul:
        by_band = {hdu.header["FILTER"]: hdu.copy() for hdu in hdul[1:] if "FILTER" in hdu.header}
    hdus = [fits.PrimaryHDU()]
    for band in order:
        hdu = by_band[band.lower()]
        hdu.header["FILTER"] = band
        hdu.header["EXTNAME"] = band
        if edit is not None:
            hdu = edit(band.lower(), hdu) or hdu
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(destination)
    return destination


@pytest.mark.parametrize("order", [("u", "g", "r", "i", "z"), ("z", "I", "u", "R", "G")])
def test_read_image_takes_g_r_i_by_name(galaxy, tmp_path, order):
    shuffled = _rewrite(galaxy, tmp_path / "shuffled.fits", order)
    expected, result = read_image(galaxy), read_image(shuffled)
    np.testing.assert_array_equal(result.rgb, expected.rgb)
    assert result.header["FILTER"].lower() == "g"
    # Taken positionally, the first three HDUs would give other colours.
    assert not np.array_equal(read_image(_rewrite(galaxy, tmp_path / "positional.fits", order, edit=_unname)).rgb, expected.rgb)


def _unname(band, hdu):
    del hdu.header["FILTER"], hdu.header["EXTNAME"]


def test_read_image_without_band_names_is_positional(galaxy, tmp_path):
    unnamed = _rewrite(galaxy, tmp_path / "unnamed.fits", ("g", "r", "i", "u", "z"), edit=_unname)
    np.testing.assert_array_equal(read_image(unnamed).rgb, read_image(galaxy).rgb)


def test_read_image_naming_bands_without_g_is_unreadable(galaxy, tmp_path):
    path = _rewrite(galaxy, tmp_path / "no_g.fits", ("u", "r", "i", "z"))
    with pytest.raises(UnreadableImageError, match=r"^no_g.fits: names bands u, r, i, z but lacks g \(FILTER or EXTNAME\)$"):
        read_image(path)


def test_read_bands_in_wavelength_order(galaxy, tmp_path):
    path = _rewrite(galaxy, tmp_path / "shuffled.fits", ("z", "I", "u", "R", "G"))
    bands = read_bands(path, required=("g", "r", "i"))
    assert list(bands.images) == ["u", "g", "r", "i", "z"]
    assert bands.zero_points == dict.fromkeys("ugriz", 22.5)
    assert bands.pixel_scale_arcsec == pytest.approx(0.396)
    with fits.open(galaxy) as hdul:
        r = hdul["r"]
        np.testing.assert_array_equal(bands.images["r"], r.data)
        assert bands.psf_fwhm_px["r"] == pytest.approx(r.header["PSFFWHM"] / 0.396)
        assert bands.gains["r"] == pytest.approx(r.header["GAIN"])
    assert np.median(bands.images["r"]) == pytest.approx(0, abs=5 * NANOMAGGIES_PER_UNIT)
    assert bands.wcs is not None and bands.wcs.has_celestial


def test_psf_images_are_read_by_band_and_normalised(galaxy, tmp_path):
    bands = read_bands(galaxy)
    assert sorted(bands.psf_images) == sorted("ugriz")
    psf = bands.psf_images["r"]
    assert psf.sum() == pytest.approx(1.0)
    centre = np.unravel_index(np.argmax(psf), psf.shape)
    assert centre == (psf.shape[0] // 2, psf.shape[1] // 2)
    # A file without them: no PSF images; the picture ignores them either way.
    bare = _rewrite(galaxy, tmp_path / "bare.fits", ("u", "g", "r", "i", "z"))
    assert read_bands(bare).psf_images == {}
    np.testing.assert_array_equal(read_image(galaxy).rgb, read_image(bare).rgb)


@pytest.mark.parametrize(
    "psf, name, message",
    [
        (np.full((5, 5), np.nan), "PSF_R", r"^bad.fits: the PSF image of band 'r' must be a finite 2-D image of positive sum$"),
        (np.ones((5, 5)), "PSF_Y", r"^bad.fits: PSF images of y, which are not among its bands u, g, r, i, z$"),
    ],
)
def test_bad_psf_images_give_one_clear_line(galaxy, tmp_path, psf, name, message):
    path = _rewrite(galaxy, tmp_path / "bad.fits", ("u", "g", "r", "i", "z"))
    fits.append(path, psf, header=fits.Header([("EXTNAME", name)]))
    with pytest.raises(BandReadError, match=message):
        read_bands(path)


def _drop(*keys):
    def edit(band, hdu):
        for key in keys:
            del hdu.header[key]
    return edit


def test_options_supply_what_headers_lack(galaxy, tmp_path):
    path = _rewrite(galaxy, tmp_path / "bare.fits", ("u", "g", "r", "i", "z"), edit=_drop("MAGZP", "PSFFWHM", "GAIN"))
    bands = read_bands(path, zero_point={"u": 20.0, "g": 21, "r": 22, "i": 23, "z": 24}, fwhm_arcsec=1.386, gain=5.0)
    assert bands.zero_points["u"] == 20.0 and bands.zero_points["z"] == 24.0
    assert bands.psf_fwhm_px["g"] == pytest.approx(3.5)
    assert bands.gains["i"] == 5.0


def _halve(band, hdu):
    if band == "z":
        hdu.data = hdu.data[: _SIZE // 2]


def _zero_fwhm(band, hdu):
    hdu.header["PSFFWHM"] = 0.0


@pytest.mark.parametrize(
    "edit, kwargs, message",
    [
        (None, {"required": ("g", "y")}, r"^bad.fits: bands u, g, r, i, z lack y$"),
        (_halve, {}, r"^bad.fits: band shapes differ: \{.*'z': \(24, 48\)\}$"),
        (_drop("MAGZP"), {}, r"^bad.fits: band 'u' has no zero point \(MAGZP\): give one \(zero_point\)$"),
        (_drop("PSFFWHM"), {}, r"^bad.fits: band 'u' has no PSF FWHM \(PSFFWHM, arcsec\): give one \(fwhm_arcsec\)$"),
        (_zero_fwhm, {}, r"^bad.fits: band 'u' has PSF FWHM 0.0 arcsec; it must be > 0$"),
        (_unname, {}, r"^bad.fits: no image HDU names its band"),
    ],
)
def test_bad_input_gives_one_clear_line(galaxy, tmp_path, edit, kwargs, message):
    path = _rewrite(galaxy, tmp_path / "bad.fits", ("u", "g", "r", "i", "z"), edit=edit)
    with pytest.raises(BandReadError, match=message):
        read_bands(path, **kwargs)


def _cube(galaxy, destination, order="ugriz", bands_keyword=None):
    """The galaxy's planes in one (B, H, W) cube listing them in BANDS, with the r band's header values."""
    bands = read_bands(galaxy)
    with fits.open(galaxy) as hdul:
        header = hdul["r"].header.copy()
    for key in ("FILTER", "EXTNAME"):
        del header[key]
    header["BANDS"] = bands_keyword or ",".join(order)
    fits.PrimaryHDU(np.stack([bands.images[band] for band in order]), header=header).writeto(destination)
    return destination


def _files_per_band(galaxy, folder, stem="J1234"):
    """The galaxy's band HDUs as one file each, `{stem}_{band}.fits`; returns the placeholder path."""
    with fits.open(galaxy) as hdul:
        for hdu in hdul[1:]:
            if "FILTER" in hdu.header:
                fits.PrimaryHDU(hdu.data, header=hdu.header).writeto(folder / f"{stem}_{hdu.header['FILTER']}.fits")
    return folder / f"{stem}_{{band}}.fits"


def test_a_cube_listing_its_bands_reads_as_one_hdu_per_band(galaxy, tmp_path):
    expected = read_bands(galaxy)
    cube = read_bands(_cube(galaxy, tmp_path / "cube.fits", order="zirgu"))
    assert list(cube.images) == ["u", "g", "r", "i", "z"]
    for band in "ugriz":
        np.testing.assert_array_equal(cube.images[band], expected.images[band])
    assert cube.psf_fwhm_px == pytest.approx(expected.psf_fwhm_px) and cube.wcs is not None
    # The picture takes g, r, i by the names BANDS gives, whatever the planes' order.
    np.testing.assert_array_equal(read_image(tmp_path / "cube.fits").rgb, read_image(galaxy).rgb)


def test_files_per_band_read_as_one_galaxy(galaxy, tmp_path):
    from gsfc_tf.catalogue import expand_image_paths, galaxy_id, read_galaxy, read_science

    pattern = _files_per_band(galaxy, tmp_path)
    expected = read_bands(galaxy)
    per_band = read_bands(pattern)
    assert list(per_band.images) == ["u", "g", "r", "i", "z"]
    for band in "ugriz":
        np.testing.assert_array_equal(per_band.images[band], expected.images[band])
    picture = read_image(pattern).rgb
    np.testing.assert_array_equal(picture, read_image(galaxy).rgb)
    np.testing.assert_array_equal(read_science(pattern, picture).detection, read_science(galaxy, picture).detection)
    # As `predict` and `survey` read it: the same picture and bands as the one file's.
    cutout, science = read_galaxy(pattern)
    np.testing.assert_array_equal(cutout.image, picture)
    np.testing.assert_array_equal(science.bands.images["u"], expected.images["u"])
    # `predict` and `survey` find each galaxy once, named without its band.
    _files_per_band(galaxy, tmp_path, stem="J5678")
    found = expand_image_paths([str(tmp_path / "J*_{band}.fits")])
    assert [path.name for path in found] == ["J1234_{band}.fits", "J5678_{band}.fits"]
    assert [galaxy_id(path) for path in found] == ["J1234", "J5678"]
    with pytest.raises(ValueError, match=r"\{band\} must appear once, in the file name, with no wildcard after it$"):
        expand_image_paths([str(tmp_path / "J1234_{band}*.fits")])


def test_bad_cubes_and_files_per_band_give_one_clear_line(galaxy, tmp_path):
    _cube(galaxy, tmp_path / "cube.fits", bands_keyword="u,g,r")
    with pytest.raises(BandReadError, match=r"^cube.fits: BANDS lists 3 bands \(u, g, r\) for data of shape \(5, 48, 48\)$"):
        read_bands(tmp_path / "cube.fits")
    pattern = _files_per_band(galaxy, tmp_path)
    fits.setval(tmp_path / "J1234_g.fits", "FILTER", value="r")
    with pytest.raises(BandReadError, match=r"^J1234_g.fits: FILTER says band 'r', the file name 'g'$"):
        read_bands(pattern)
    with pytest.raises(BandReadError, match=r"^nothing_\{band\}.fits: no file for any band \(u, g, r, i, z, y\)$"):
        read_bands(tmp_path / "nothing_{band}.fits")
