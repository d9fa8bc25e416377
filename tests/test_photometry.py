"""Clump photometry and host segmentation on controlled images whose every flux is known."""

import math

import numpy as np
import pytest

from gsfc_tf.host import detection_image, segment_host
from gsfc_tf.photometry import (
    APERTURE_FWHM,
    PsfMixture,
    clump_photometry,
    clump_light_fraction,
    merge_detections,
    psf_mixture,
)

_SIZE = 101
_FWHM = 3.0


def _gaussian(x0, y0, flux, fwhm=_FWHM, size=_SIZE):
    """[size, size] Gaussian of total `flux` at (x0, y0), sampled at pixel centres (0-based)."""
    sigma = fwhm / 2.3548200450309493
    y, x = np.mgrid[:size, :size]
    return flux / (2 * np.pi * sigma**2) * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2))


def _disc(size=_SIZE, peak=5.0, scale=15.0):
    """An exponential disc at the image centre: the host's diffuse light."""
    y, x = np.mgrid[:size, :size]
    return peak * np.exp(-np.hypot(x - size // 2, y - size // 2) / scale)


def _measure(image, centres, **kwargs):
    return clump_photometry({"r": image}, centres, fwhm_px={"r": _FWHM}, zero_point={"r": 22.5}, **kwargs)


def test_clump_light_fraction():
    # A point source through a Gaussian PSF, as exact apertures sum it: 1 - exp(-r^2 / 2 sigma^2)
    # with the pixel's 1/12 px^2 added to the PSF's sigma^2.
    radius, sigma_sq = APERTURE_FWHM * _FWHM, (_FWHM / 2.3548200450309493) ** 2
    point = clump_light_fraction(radius, _FWHM)
    assert point == pytest.approx(1 - math.exp(-(radius**2) / (2 * (sigma_sq + 1 / 12))), abs=1e-4)
    assert clump_light_fraction(0.0, _FWHM) == 0.0
    # A clump as wide as the PSF's sigma loses more light outside and into the annulus.
    wide = clump_light_fraction(radius, _FWHM, size_px=_FWHM / 2.3548)
    assert 0.5 < wide < point
    # Numerically: a Gaussian of sigma^2 = 2 PSF sigma^2 + 1/12, its aperture less the annulus median.
    sigma = math.sqrt(2 * sigma_sq + 1 / 12)
    y, x = (np.mgrid[:2001, :2001] - 1000) / 40
    profile = np.exp(-(x**2 + y**2) / (2 * sigma**2)) / (2 * np.pi * sigma**2) / 40**2
    distance = np.hypot(x, y)
    in_annulus = (distance >= 1.5 * _FWHM) & (distance < 2.5 * _FWHM)
    background = np.median(profile[in_annulus])
    in_aperture = distance < radius
    assert wide == pytest.approx(profile[in_aperture].sum() - background * in_aperture.sum(), abs=0.005)
    # A PSF given as a mixture: the weighted sum of its Gaussians' fractions.
    core, wing = PsfMixture(np.ones(1), np.array([sigma_sq])), PsfMixture(np.ones(1), np.array([4 * sigma_sq]))
    mixed = clump_light_fraction(radius, _FWHM, psf=PsfMixture(np.array([0.9, 0.1]), np.array([sigma_sq, 4 * sigma_sq])))
    assert mixed == pytest.approx(
        0.9 * clump_light_fraction(radius, _FWHM, psf=core) + 0.1 * clump_light_fraction(radius, _FWHM, psf=wing)
    )
    assert clump_light_fraction(radius, _FWHM, psf=core) == pytest.approx(point)


def _moffat_image(beta, fwhm=_FWHM, size=_SIZE, x0=None, y0=None, flux=1.0):
    """[size, size] Moffat profile of total `flux` (the whole plane's) at (x0, y0), default the centre."""
    x0 = (size - 1) / 2 if x0 is None else x0
    y0 = (size - 1) / 2 if y0 is None else y0
    alpha = fwhm / (2 * math.sqrt(2 ** (1 / beta) - 1))
    y, x = np.mgrid[:size, :size]
    return flux * (beta - 1) / (math.pi * alpha**2) * (1 + ((x - x0) ** 2 + (y - y0) ** 2) / alpha**2) ** -beta


@pytest.mark.parametrize("beta", [2.0, 3.0, 4.5])
def test_psf_mixture_gives_what_the_aperture_measures_on_the_psf(beta):
    # The correction from a Moffat PSF image equals the aperture less the annulus median measured
    # on that image (of the whole plane's light) within 0.005; a Gaussian of the FWHM misses its
    # wings by 0.05-0.3.
    image = _moffat_image(beta, size=201)
    centre = [[100.0, 100.0]]
    measured = _measure(image, centre)
    gaussian_fraction = clump_light_fraction(APERTURE_FWHM * _FWHM, _FWHM)
    aperture_less_annulus = measured["flux_r"][0] * gaussian_fraction  # undo the Gaussian correction
    mixture = psf_mixture(image[80:121, 80:121], _FWHM)
    assert mixture.weights.sum() == pytest.approx(1.0)
    fraction = clump_light_fraction(APERTURE_FWHM * _FWHM, _FWHM, psf=mixture)
    assert fraction == pytest.approx(aperture_less_annulus, abs=0.005)
    assert gaussian_fraction - fraction > 0.05


def test_psf_images_correct_a_moffat_clumps_flux():
    # A clump seen through a Moffat PSF (beta 2.5) on a disc: its PSF image gives its flux as well
    # as a Gaussian clump's on a Gaussian PSF (102.7, the disc's curvature: see above); a
    # Gaussian of the FWHM leaves out the wings, 20 % of the light.
    image = _disc() + _moffat_image(2.5, x0=70.0, y0=50.0, flux=100.0)
    psf = _moffat_image(2.5, size=41)
    with_psf = _measure(image, [[70.0, 50.0]], psf_images={"r": psf})["flux_r"][0]
    assert with_psf == pytest.approx(100.0, rel=0.03)
    assert _measure(image, [[70.0, 50.0]])["flux_r"][0] < 85.0
    # Resolved: the same clump's fitted size stays a point's.
    resolved = _measure(image, [[70.0, 50.0]], psf_images={"r": psf}, resolved=True)
    assert resolved["size"][0] < 0.3
    assert resolved["flux_r"][0] == pytest.approx(100.0, rel=0.04)


def test_point_source_is_recovered():
    # Alone: measured 99.3 (the 3-px Gaussian sampled at pixel centres); without the aperture
    # correction it would be 3 % fainter.
    table = _measure(_gaussian(50.0, 50.0, 100.0), [[50.0, 50.0]])
    assert table["flux_r"][0] == pytest.approx(100.0, rel=0.01)
    assert table["flux_r"].unit == "nmgy" and table["mag_r"].unit == "mag"
    assert table["mag_r"][0] == pytest.approx(22.5 - 2.5 * math.log10(100.0), abs=0.01)


def test_point_source_on_a_disc_is_recovered():
    # 20 px out on an exponential disc (scale 15 px) holding 35x its light, 1.3x its peak under
    # it: the annulus removes the disc. Measured 102.7: the annulus' median follows the curved
    # isophotes, a little below the disc under the clump. Without the background: 150.
    disc = _disc()
    table = _measure(disc + _gaussian(70.0, 50.0, 100.0), [[70.0, 50.0]])
    assert table["flux_r"][0] == pytest.approx(100.0, rel=0.03)
    assert _measure(disc, [[70.0, 50.0]])["background_r"][0] == pytest.approx(disc[50, 70], rel=0.1)


def test_zero_points_convert_to_nanomaggies():
    image = _gaussian(50.0, 50.0, 100.0)
    table = clump_photometry({"r": image}, [[50.0, 50.0]], fwhm_px={"r": _FWHM}, zero_point={"r": 25.0})
    assert table["flux_r"][0] == pytest.approx(100.0 * 10 ** (-0.4 * 2.5), rel=0.01)
    assert table["mag_r"][0] == pytest.approx(25.0 - 2.5 * math.log10(100.0), abs=0.01)


def test_neighbours_in_the_annulus_are_masked():
    # Four clumps 3x brighter, 6 px away on every side, fill the 4.5-7.5 px annulus: sigma
    # clipping alone cannot remove them (measured -107), masking their apertures does (104.1,
    # their wings reach into the aperture).
    neighbours_xy = [[76.0, 50.0], [64.0, 50.0], [70.0, 56.0], [70.0, 44.0]]
    image = _disc() + _gaussian(70.0, 50.0, 100.0) + sum(_gaussian(x, y, 300.0) for x, y in neighbours_xy)
    table = _measure(image, [[70.0, 50.0], *neighbours_xy])
    assert table["flux_r"][0] == pytest.approx(100.0, rel=0.06)
    assert _measure(image, [[70.0, 50.0]])["flux_r"][0] < 0


def test_errors_match_the_scatter_over_noise_draws():
    # On flat sky the errors are 8 % above the scatter of 200 draws (measured); on a steep disc
    # more, since the annulus' scatter then holds the disc's gradient too.
    rng = np.random.default_rng(0)
    truth = _gaussian(50.0, 50.0, 30.0)
    fluxes, errors = [], []
    for _ in range(200):
        table = _measure(truth + rng.normal(0.0, 0.5, truth.shape), [[50.0, 50.0]])
        fluxes.append(table["flux_r"][0])
        errors.append(table["flux_err_r"][0])
    assert np.mean(fluxes) == pytest.approx(30.0, abs=3 * np.std(fluxes) / math.sqrt(200))
    assert 1.0 <= np.median(errors) / np.std(fluxes) <= 1.12


def test_nan_pixels_are_masked_and_counted():
    image = _disc() + _gaussian(70.0, 50.0, 100.0)
    image[50, 71] = np.nan
    table = _measure(image, [[70.0, 50.0]])
    assert table["n_masked"][0] == 1
    assert table["flux_r"][0] == pytest.approx(100.0, rel=0.05)


def test_host_ratio_flags_and_distances():
    rng = np.random.default_rng(1)
    host_light = _disc(peak=5.0)
    bright, faint = _gaussian(70.0, 50.0, 800.0), _gaussian(30.0, 50.0, 20.0)
    image = host_light + bright + faint + rng.normal(0.0, 0.2, host_light.shape)
    host = segment_host(image, fwhm_px=_FWHM)
    # The centroid is the light-weighted one over the host's segment, above the measured sky: it
    # leans towards the bright clump. photutils weights by the PSF-smoothed image, which moves it
    # 0.024 px from the raw image's here.
    assert host.found and host.mask[50, 50] and not host.mask[2, 2]
    y, x = np.mgrid[:_SIZE, :_SIZE]
    weights = np.where(host.mask, image - host.background, 0.0)
    assert host.x == pytest.approx((x * weights).sum() / weights.sum(), abs=0.03) and host.x > 52.5
    assert host.y == pytest.approx((y * weights).sum() / weights.sum(), abs=0.03)
    table = _measure(image, [[70.0, 50.0], [30.0, 50.0], [2.0, 2.0]], host=host, pixel_scale_arcsec=0.396)
    true_host = host_light.sum() + 820.0
    ratios = np.array([800.0, 20.0]) / true_host
    # The host's Kron flux holds nearly all its light; the faint clump gains the curved disc's
    # +2.8 (as in `test_point_source_on_a_disc_is_recovered`): measured +0.3 % and +8.8 %.
    np.testing.assert_allclose(table["flux_ratio_r"][:2], ratios, rtol=0.15)
    assert list(table["is_clump_8pct"][:2]) == list(ratios > 0.08) == [True, False]
    assert list(table["is_clump_3pct"][:2]) == [True, False]
    assert list(table["off_host"]) == [False, False, True]
    distance = np.hypot(70.0 - host.x, 50.0 - host.y)
    assert table["distance"][0] == pytest.approx(distance)
    assert table["distance_arcsec"][0] == pytest.approx(distance * 0.396)
    assert table["distance_re"][0] == pytest.approx(distance / host.half_light_radius)
    assert table.meta["flag_band"] == "r"


def test_colours_and_flag_band_default_to_the_bluest():
    image = _gaussian(50.0, 50.0, 100.0)
    table = clump_photometry(
        {"u": image * 0.5, "g": image},
        [[50.0, 50.0]],
        fwhm_px={"u": _FWHM, "g": _FWHM},
        zero_point={"u": 22.5, "g": 22.5},
        host=segment_host(_disc() + image, fwhm_px=_FWHM),
    )
    assert table["u_g"][0] == pytest.approx(2.5 * math.log10(2.0), abs=0.01)
    assert table.meta["flag_band"] == "u"


def test_no_clumps_gives_an_empty_table():
    table = _measure(_disc(), np.zeros((0, 2)))
    assert len(table) == 0 and "flux_r" in table.colnames


def test_merge_detections():
    centres = [[10.0, 10.0], [12.0, 10.0], [14.5, 10.0], [40.0, 40.0]]
    merged, labels, member_of = merge_detections(centres, fwhm_px=3.0, labels=[0, 1, 0, 0])
    # 10 -> 12 -> 14.5 is one chain (each step < 3 px); 40, 40 stands alone.
    np.testing.assert_allclose(merged, [[12.166666, 10.0], [40.0, 40.0]], atol=1e-5)
    assert list(labels) == [1, 0] and list(member_of) == [0, 0, 0, 1]
    merged, labels, member_of = merge_detections(np.zeros((0, 2)), fwhm_px=3.0)
    assert merged.shape == (0, 2) and labels is None


@pytest.mark.parametrize("degrees", [-60.0, 120.0, 300.0])
def test_host_position_angle_is_in_0_to_180(degrees):
    # One axis, three spellings of its angle: photutils gives them in (-180, 360); the host one.
    y, x = np.mgrid[:_SIZE, :_SIZE]
    angle = np.radians(degrees)
    major = (x - 50.0) * np.cos(angle) + (y - 50.0) * np.sin(angle)
    minor = ((y - 50.0) * np.cos(angle) - (x - 50.0) * np.sin(angle)) / 0.5
    disc = 5.0 * np.exp(-np.hypot(major, minor) / 8.0)
    host = segment_host(disc + np.random.default_rng(3).normal(0.0, 0.05, disc.shape), fwhm_px=_FWHM)
    assert host.position_angle == pytest.approx(120.0, abs=1.0)


def test_host_shape_of_an_inclined_disc():
    # An exponential disc inclined to axis ratio 0.5, major axis 30 deg from +x, centred off the
    # image centre: the segment under the centre is it, with its centroid, shape and size.
    rng = np.random.default_rng(2)
    y, x = np.mgrid[:_SIZE, :_SIZE]
    angle = np.radians(30.0)
    major = (x - 52.0) * np.cos(angle) + (y - 48.0) * np.sin(angle)
    minor = ((y - 48.0) * np.cos(angle) - (x - 52.0) * np.sin(angle)) / 0.5
    disc = 5.0 * np.exp(-np.hypot(major, minor) / 8.0)
    host = segment_host(disc + rng.normal(0.0, 0.05, disc.shape), fwhm_px=_FWHM)
    # Measured: centre (51.89, 47.89), axis ratio 0.508, 29.6 deg, half-light radius 9.86 px.
    assert (host.x, host.y) == (pytest.approx(52.0, abs=0.15), pytest.approx(48.0, abs=0.15))
    assert host.axis_ratio == pytest.approx(0.5, abs=0.015)
    assert host.position_angle == pytest.approx(30.0, abs=0.6)
    # The half-light radius is a circle's: the noise-free disc holds half its light within 10.05 px.
    distance = np.hypot(x - 52.0, y - 48.0).ravel()
    order = np.argsort(distance)
    light = np.cumsum(disc.ravel()[order])
    true_radius = distance[order][np.searchsorted(light, light[-1] / 2)]
    assert host.half_light_radius == pytest.approx(true_radius, rel=0.03)
    row = host.table()
    assert len(row) == 1 and row["host_flag"][0] == ""
    assert row["host_semi_major_axis"].unit == "pix" and row["host_position_angle"].unit == "deg"
    assert row["host_area"][0] == host.mask.sum() and host.n_invalid == 0


def test_nan_pixels_in_the_host_are_masked_and_counted():
    image = _disc() + _gaussian(70.0, 50.0, 800.0) + np.random.default_rng(3).normal(0.0, 0.2, (_SIZE, _SIZE))
    clean = segment_host(image, fwhm_px=_FWHM)
    expected = _measure(image, [[70.0, 50.0]], host=clean)["flux_ratio_r"][0]
    image[40:43, 40:45] = np.nan  # a 3 x 5 patch of bad pixels on the disc
    host = segment_host(image, fwhm_px=_FWHM)
    assert host.found and host.n_invalid == 15
    # Measured: the centroid moves 0.05 px; the host's Kron flux leaves the patch's 0.48 % of
    # its light out, so the clump's ratio rises 0.47 %.
    assert (host.x, host.y) == (pytest.approx(clean.x, abs=0.1), pytest.approx(clean.y, abs=0.1))
    assert _measure(image, [[70.0, 50.0]], host=host)["flux_ratio_r"][0] == pytest.approx(expected, rel=0.006)


def test_host_not_found_is_a_flag():
    host = segment_host(np.zeros((40, 40)), fwhm_px=_FWHM)
    assert host.flag == "no_segment_at_centre" and not host.found
    assert segment_host(np.full((40, 40), np.nan), fwhm_px=_FWHM).flag == "no_valid_pixels"
    # Noise with most pixels NaN, scattered or in a block: a flag, not a crash.
    rng = np.random.default_rng(6)
    for bad in (rng.random((100, 100)) < 0.7, np.arange(100) < 60):
        noise = np.where(bad, np.nan, rng.normal(0.0, 1.0, (100, 100)))
        assert segment_host(noise, fwhm_px=_FWHM).flag == "no_segment_at_centre"
    table = _measure(np.zeros((40, 40)), [[20.0, 20.0]], host=host)
    assert np.isnan(table["flux_ratio_r"][0]) and not table["is_clump_8pct"][0]
    # Without a host, every clump is off it.
    assert table["host_flag"][0] == "no_segment_at_centre" and table["off_host"][0]


def _outer_disc_and_neighbour(size=201):
    """A disc (peak 5 sigma per pixel, scale 20 px) at the centre with a clump 48 px out, where the
    disc is 0.45 sigma per pixel, and a small galaxy 99 px out, beyond 35 px of sky; noise 1."""
    y, x = np.mgrid[:size, :size]
    disc = 5.0 * np.exp(-np.hypot(x - 100, y - 100) / 20.0)
    neighbour = 5.0 * np.exp(-np.hypot(x - 170, y - 170) / 5.0)
    clump = _gaussian(148.0, 100.0, 30.0, fwhm=3.5, size=size)
    return disc + neighbour + clump + np.random.default_rng(4).normal(0.0, 1.0, disc.shape)


def test_a_clump_in_the_faint_outer_disc_is_on_the_host_and_a_neighbour_off_it():
    # The host's segment reaches where the PSF-smoothed disc is 2 sigma of the smoothed noise
    # (about 55 px out here); one sigma of the pixel noise (5.3 of the smoothed), the old rule,
    # left the clump off.
    host = segment_host(_outer_disc_and_neighbour(), fwhm_px=3.5)
    assert host.found
    assert list(host.contains([100.0, 148.0, 170.0, 5.0], [100.0, 100.0, 170.0, 5.0])) == [True, True, False, False]
    assert not segment_host(_outer_disc_and_neighbour(), fwhm_px=3.5, n_sigma=5.3).contains(148.0, 100.0)


def test_a_neighbour_joined_to_the_host_at_2_sigma_is_split_off_and_a_clump_is_not():
    # A disc (peak 5, scale 15 px) and a neighbour galaxy 85 px out (peak 5, scale 5 px, 11 % of
    # the disc's light) joined by a faint band: the light between them lies 2-3 sigma of the
    # smoothed noise, so they are one 2-sigma segment but two 3-sigma sources (in 11 of 12
    # noise seeds). A clump on the disc, 25 px out towards the neighbour, stays on the host.
    y, x = np.mgrid[:201, :201]
    disc = 5.0 * np.exp(-np.hypot(x - 100, y - 100) / 15.0)
    neighbour = 5.0 * np.exp(-np.hypot(x - 185, y - 100) / 5.0)
    band = 0.24 * ((x > 100) & (x < 185) & (np.abs(y - 100) <= 15))
    clump = _gaussian(125.0, 100.0, 100.0, fwhm=3.5, size=201)
    image = disc + neighbour + band + clump + np.random.default_rng(0).normal(0.0, 1.0, disc.shape)
    host = segment_host(image, fwhm_px=3.5)
    assert list(host.contains([100.0, 125.0, 185.0], [100.0, 100.0, 100.0])) == [True, True, False]
    # The neighbour keeps a segment of its own, which the host's centroid leaves out: measured
    # x = 103.4 (the clump and the band's host side pull it), 112.5 with the neighbour.
    assert host.segmentation.data[100, 185] not in (0, host.label)
    whole = segment_host(image, fwhm_px=3.5, neighbour_n_sigma=None)
    assert whole.contains(185.0, 100.0)
    assert host.x < 104.0 < 112.0 < whole.x


def test_host_sky_is_measured_where_the_galaxy_fills_the_crop():
    # A picture's sky: the galaxy filling the crop raised its sigma-clipped median to 5-50 counts
    # (synthetic PNGs); the faintest box finds the pedestal.
    image = _outer_disc_and_neighbour() + 12.0
    host = segment_host(image, fwhm_px=3.5)
    assert host.background == pytest.approx(12.0, abs=0.1)
    assert host.noise == pytest.approx(1.0 / (2 * np.sqrt(np.pi) * 3.5 / 2.3548), rel=0.15)
    assert host.contains(148.0, 100.0)


def test_detection_image_weights_bands_by_inverse_noise_variance():
    rng = np.random.default_rng(5)
    signal = _disc()
    quiet, noisy = signal + rng.normal(0.0, 1.0, signal.shape), signal + rng.normal(0.0, 3.0, signal.shape)
    # Weights 1 and 1/9 over their mean: 1.8 and 0.2.
    np.testing.assert_allclose(detection_image([quiet, noisy]), 1.8 * quiet + 0.2 * noisy, atol=0.1)
    flat = np.ones((5, 5))
    np.testing.assert_array_equal(detection_image([flat, 2 * flat]), 3 * flat)  # no noise to weigh: summed
    with pytest.raises(ValueError, match="one or more images of one shape"):
        detection_image([np.zeros((5, 5)), np.zeros((6, 5))])


@pytest.mark.parametrize(
    "bands, kwargs, message",
    [
        ({}, {}, "bands is empty"),
        ({"r": np.zeros((5, 5)), "g": np.zeros((6, 5))}, {}, "shapes differ"),
        ({"r": np.zeros(5)}, {}, "must be a 2-D image"),
        ({"r": np.zeros((5, 5))}, {"fwhm_px": {}}, r"fwhm_px has no value for band\(s\) \['r'\]"),
        ({"r": np.zeros((5, 5))}, {"zero_point": {}}, r"zero_point has no value for band\(s\) \['r'\]"),
        ({"r": np.zeros((5, 5))}, {"fwhm_px": {"r": 0.0}}, "fwhm_px of band 'r' must be > 0"),
        ({"r": np.zeros((5, 5))}, {"flag_band": "u"}, "flag_band 'u' is not one of the bands"),
        ({"r": np.zeros((5, 5))}, {"centres_xy": np.zeros(3)}, r"centres_xy must be \[N, 2\]"),
    ],
)
def test_bad_inputs_give_one_clear_line(bands, kwargs, message):
    options = {"fwhm_px": {"r": 3.0}, "zero_point": {"r": 22.5}, "centres_xy": np.zeros((1, 2)), **kwargs}
    centres = options.pop("centres_xy")
    with pytest.raises(ValueError, match=message) as error:
        clump_photometry(bands, centres, **options)
    assert "\n" not in str(error.value)


def test_segment_host_bad_inputs():
    with pytest.raises(ValueError, match="fwhm_px must be > 0"):
        segment_host(np.zeros((5, 5)), fwhm_px=-1.0)
    with pytest.raises(ValueError, match="detection_image must be a 2-D numeric image"):
        segment_host(np.zeros((2, 5, 5)), fwhm_px=3.0)


def test_annulus_background_is_photutils_aperture_stats_median():
    # The annulus' sigma-clipped median and scatter, the other clumps' apertures and NaN pixels
    # left out, are ApertureStats' (which `_measure_band` no longer calls, for speed).
    from photutils.aperture import ApertureStats, CircularAnnulus

    from gsfc_tf.photometry import ANNULUS_FWHM, _SIGMA_CLIP, _Geometry, _measure_band

    rng = np.random.default_rng(3)
    centres = np.array([[70.0, 50.0], [64.5, 52.0], [30.2, 48.7], [3.0, 97.0]])  # the last one off the edge
    image = _disc() + sum(_gaussian(x, y, 200.0) for x, y in centres) + rng.normal(0.0, 0.3, (_SIZE, _SIZE))
    image[48:51, 75:78] = np.nan
    measured = _measure_band(image, _Geometry.make(image.shape, centres, _FWHM), gain=math.inf)
    radius = APERTURE_FWHM * _FWHM
    rows, columns = np.indices(image.shape)
    for k, (x, y) in enumerate(centres):
        others = np.delete(centres, k, axis=0)
        near = (np.hypot(columns[..., None] - others[:, 0], rows[..., None] - others[:, 1]) <= radius).any(axis=-1)
        annulus = CircularAnnulus((x, y), r_in=ANNULUS_FWHM[0] * _FWHM, r_out=ANNULUS_FWHM[1] * _FWHM)
        stats = ApertureStats(image, annulus, mask=near | ~np.isfinite(image), sigma_clip=_SIGMA_CLIP)
        assert measured.background[k] == pytest.approx(stats.median, rel=1e-12)
