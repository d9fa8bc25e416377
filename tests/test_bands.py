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
