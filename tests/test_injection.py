"""gsfc_tf.injection: clump fluxes from the flux ratio and colours, their light in the bands, their positions."""

import math

import numpy as np
import pytest

from gsfc_tf import conventions
from gsfc_tf.injection import (
    DEFAULT_COLOUR_RANGES,
    aperture_snr,
    clump_fluxes,
    draw_positions,
    gaussian_psf,
    inject_clumps,
    moffat_psf,
    truth_boxes,
)

BANDS = ("u", "g", "r", "i", "z")
ZERO_POINTS = dict.fromkeys(BANDS, 22.5)
FWHM = dict.fromkeys(BANDS, 3.3)


def _blank(size=64):
    return {band: np.zeros((size, size), np.float32) for band in BANDS}


def test_injected_light_is_the_flux_ratio_of_the_host_with_the_clump():
    host_flux = 800.0
    fluxes = clump_fluxes(0.3, host_flux, bands=BANDS, flag_band="u", zero_points=ZERO_POINTS, n=2,
                          rng=np.random.default_rng(0))
    # The catalogue's ratio: the clump over the host with it added.
    np.testing.assert_allclose(fluxes["u"] / (host_flux + fluxes["u"]), 0.3)
    injected = inject_clumps(_blank(), [[20.3, 30.7], [40.0, 12.5]], fluxes, fwhm_px=FWHM, sizes_px=[0.0, 1.5])
    for band in BANDS:
        assert injected[band].dtype == np.float32
        np.testing.assert_allclose(injected[band].sum(dtype=np.float64), fluxes[band].sum(), rtol=1e-5)


def test_colours_are_drawn_within_their_ranges_and_zero_points_convert_units():
    fluxes = clump_fluxes(0.05, 100.0, bands=BANDS, flag_band="u", zero_points={**ZERO_POINTS, "g": 25.0}, n=200,
                          rng=np.random.default_rng(1))
    # g's unit is 10 ** (-0.4 * 2.5) nanomaggies: its numbers are 10x larger.
    g_nmgy = fluxes["g"] * 10 ** (-0.4 * 2.5)
    for (bluer, bluer_flux), (redder, redder_flux) in [(("u", fluxes["u"]), ("g", g_nmgy)),
                                                        (("g", g_nmgy), ("r", fluxes["r"]))]:
        colour = -2.5 * np.log10(bluer_flux / redder_flux)
        low, high = DEFAULT_COLOUR_RANGES[f"{bluer}-{redder}"]
        assert low - 1e-9 <= colour.min() and colour.max() <= high + 1e-9
        assert colour.max() - colour.min() > 0.5 * (high - low)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"flux_ratio": 1.0}, "in \\(0, 1\\)"),
        ({"host_flux": 0.0}, "must be > 0"),
        ({"flag_band": "y"}, "is not one of the bands"),
        ({"colour_ranges": {"u-g": (0, 1)}}, "no colour range for g-r, r-i, i-z"),
    ],
)
def test_clump_fluxes_refuse_what_they_cannot_draw(arguments, message):
    options = {"flux_ratio": 0.1, "host_flux": 10.0, "bands": BANDS, "flag_band": "u", "zero_points": ZERO_POINTS,
               "n": 1, "rng": np.random.default_rng(0), **arguments}
    with pytest.raises(ValueError, match=message):
        clump_fluxes(**options)


@pytest.mark.parametrize("centre", [(-0.6, 10.0), (10.0, 63.5), (64.0, 64.0)])
def test_a_clump_outside_the_image_is_refused_with_one_line(centre):
    fluxes = {band: np.ones(1) for band in BANDS}
    with pytest.raises(ValueError, match="clump 0 at .* lies outside the 64x64 image") as error:
        inject_clumps(_blank(), [centre], fluxes, fwhm_px=FWHM)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("psf", [gaussian_psf, moffat_psf(2.5), moffat_psf(4.5)])
def test_psf_profiles_fall_to_half_their_peak_at_half_the_fwhm(psf):
    fwhm = 3.7
    assert psf(np.array((fwhm / 2) ** 2), fwhm) == pytest.approx(0.5 * psf(np.array(0.0), fwhm))


def test_a_resolved_clump_spreads_the_same_flux_wider_with_the_profile_chosen():
    fluxes = {band: np.full(1, 50.0) for band in BANDS}
    point = inject_clumps(_blank(), [[31.0, 31.0]], fluxes, fwhm_px=FWHM)["r"]
    resolved = inject_clumps(_blank(), [[31.0, 31.0]], fluxes, fwhm_px=FWHM, sizes_px=[2.0])["r"]
    moffat = inject_clumps(_blank(), [[31.0, 31.0]], fluxes, fwhm_px=FWHM, psf=moffat_psf(2.5))["r"]
    for image in (point, resolved, moffat):
        assert image.sum() == pytest.approx(50.0, rel=1e-5)
    assert resolved[31, 31] < 0.5 * point[31, 31]
    # A Moffat profile holds more light in its wings than a Gaussian of the same FWHM.
    assert moffat[31, 45] > 10 * point[31, 45]


def test_poisson_noise_is_the_clumps_own_and_seeded():
    fluxes = {band: np.full(1, 1e4) for band in BANDS}
    gains = dict.fromkeys(BANDS, 2.0)
    noisy = [inject_clumps(_blank(), [[31.0, 31.0]], fluxes, fwhm_px=FWHM, gains=gains,
                           noise_rng=np.random.default_rng(3))["g"] for _ in range(2)]
    np.testing.assert_array_equal(noisy[0], noisy[1])
    quiet = inject_clumps(_blank(), [[31.0, 31.0]], fluxes, fwhm_px=FWHM)["g"]
    assert np.any(noisy[0] != quiet)
    assert np.all(noisy[0][:5] == 0)  # no light, no noise, far from the clump


def test_positions_follow_the_light_on_the_segment_with_boxes_apart():
    size, fwhm = 100, 3.0
    light = np.zeros((size, size))
    light[20:80, 20:80] = 1.0
    mask = np.zeros((size, size), bool)
    mask[:, :60] = True  # the light right of column 60 is another source's
    avoid = truth_boxes([[40.0, 50.0]], fwhm)
    window = conventions.detector_window(size, size)
    centres = draw_positions(light, mask, 6, fwhm_px=fwhm, window_yxyx=window, avoid_yxyx=avoid,
                             rng=np.random.default_rng(0))
    assert len(centres) == 6
    assert np.all((centres >= 20) & (centres < 80)) and np.all(centres[:, 0] < 60)
    boxes = truth_boxes(centres, fwhm)
    iou = conventions.pairwise_iou(boxes, np.concatenate([boxes, avoid]))
    assert np.all(iou[:, :6][~np.eye(6, dtype=bool)] == 0) and np.all(iou[:, 6] == 0)
    again = draw_positions(light, mask, 6, fwhm_px=fwhm, window_yxyx=window, avoid_yxyx=avoid,
                           rng=np.random.default_rng(0))
    np.testing.assert_array_equal(centres, again)


def test_positions_keep_their_boxes_inside_the_detectors_view():
    # A 400-px cutout: the detector sees only its central 200 px.
    light, mask = np.ones((400, 400)), np.ones((400, 400), bool)
    centres = draw_positions(light, mask, 50, fwhm_px=4.0, window_yxyx=conventions.detector_window(400, 400),
                             avoid_yxyx=np.zeros((0, 4)), rng=np.random.default_rng(1))
    boxes = truth_boxes(centres, 4.0)
    assert len(centres) > 10
    assert boxes.min() >= 100 and boxes.max() <= 300


def test_no_room_gives_fewer_positions():
    light, mask = np.ones((40, 40)), np.ones((40, 40), bool)
    centres = draw_positions(light, mask, 5, fwhm_px=3.0, window_yxyx=(0, 0, 40, 40), avoid_yxyx=np.zeros((0, 4)),
                             rng=np.random.default_rng(0))
    assert 1 <= len(centres) < 5  # 15-px boxes: few fit apart in 40 px


def test_aperture_snr_grows_with_flux_and_falls_with_noise():
    image = np.zeros((64, 64))
    snr = aperture_snr(image, [[30.0, 30.0], [30.0, 30.0]], [100.0, 400.0], fwhm_px=3.0, noise=1.0, gain=math.inf)
    assert snr[1] == pytest.approx(4 * snr[0])
    noisier = aperture_snr(image, [[30.0, 30.0]], [100.0], fwhm_px=3.0, noise=2.0, gain=math.inf)
    assert noisier[0] == pytest.approx(snr[0] / 2)
