"""Tests for the seeded synthetic Clump-Scout-like galaxies."""

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfds_clumpscout.clump_scout import synthetic
from gsfc_tf.conventions import BOX_SIDE_PER_PSF_FWHM
from tfds_clumpscout.clump_scout.synthetic import (
    HELDOUT_FAMILY,
    TRAINING_FAMILY,
    RenderFamily,
    SyntheticGalaxy,
    generate_bands,
    generate_galaxies,
    generate_galaxy,
)

# Targets from the Galaxy Zoo: Clump Scout consensus boxes (200-px crops), written out here rather
# than read from the module so that a wrong constant there fails too.
_COUNTS = np.array([5175, 8329, 3573, 1602, 710, 376, 137, 47, 7])
_MEAN_COUNT = float((np.arange(1, 10) * _COUNTS).sum() / _COUNTS.sum())  # 2.313


@pytest.fixture(scope="module")
def galaxies() -> list[SyntheticGalaxy]:
    return list(generate_galaxies(400, seed=2024))


def _assert_same(a: SyntheticGalaxy, b: SyntheticGalaxy) -> None:
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes_yxyx, b.boxes_yxyx)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.distractors_yx, b.distractors_yx)
    np.testing.assert_array_equal(a.hii_regions_yx, b.hii_regions_yx)
    np.testing.assert_array_equal(a.snr, b.snr)
    np.testing.assert_array_equal(a.contrast, b.contrast)
    assert (a.ra, a.dec, a.redshift) == (b.ra, b.dec, b.redshift)
    assert repr(a.choices) == repr(b.choices)  # repr: NaN fields compare equal


def _centre_and_ring(values, cy, cx, inner, outer, *, square):
    """Means over the pixels within `inner` of (cy, cx) and those between `inner` and `outer`.

    Distances are Chebyshev (square shells) when `square`, else Euclidean.
    """
    size = values.shape[0]
    y0, y1 = max(0, int(cy - outer)), min(size, int(cy + outer) + 1)
    x0, x1 = max(0, int(cx - outer)), min(size, int(cx + outer) + 1)
    dy = np.abs(np.arange(y0, y1) + 0.5 - cy)[:, None]
    dx = np.abs(np.arange(x0, x1) + 0.5 - cx)[None, :]
    distance = np.maximum(dy, dx) if square else np.hypot(dy, dx)
    window = values[y0:y1, x0:x1]
    return window[distance <= inner].mean(), window[(distance > inner) & (distance <= outer)].mean()


def test_same_seed_gives_the_same_galaxy():
    _assert_same(generate_galaxy(7), generate_galaxy(7))
    _assert_same(next(generate_galaxies(1, seed=7)), next(generate_galaxies(1, seed=7)))
    heldout = generate_galaxy(7, family=HELDOUT_FAMILY)
    _assert_same(heldout, generate_galaxy(7, family=HELDOUT_FAMILY))
    # The family draws the renderer, not the layout: the same clumps, drawn another way.
    np.testing.assert_array_equal(heldout.labels, generate_galaxy(7).labels)
    assert not np.array_equal(heldout.image, generate_galaxy(7).image)


def test_different_seeds_give_different_galaxies():
    a, b = generate_galaxy(1), generate_galaxy(2)
    assert not np.array_equal(a.image, b.image)
    assert a.ra != b.ra
    first, second = generate_galaxies(2, seed=1)
    assert not np.array_equal(first.image, second.image)


def test_galaxy_k_does_not_depend_on_n():
    short = list(generate_galaxies(3, seed=11))
    long = list(generate_galaxies(6, seed=11))
    for a, b in zip(short, long):
        _assert_same(a, b)


@pytest.mark.parametrize("image_size", [200, 64, 320])
def test_contract(image_size):
    for galaxy in generate_galaxies(20, seed=3, image_size=image_size):
        assert galaxy.image.dtype == np.uint8 and galaxy.image.shape == (image_size, image_size, 3)
        n = len(galaxy.labels)
        assert 1 <= n <= 9
        assert galaxy.boxes_yxyx.dtype == np.float32 and galaxy.boxes_yxyx.shape == (n, 4)
        assert galaxy.labels.dtype == np.int64 and set(galaxy.labels.tolist()) <= {0, 1}
        y0, x0, y1, x1 = galaxy.boxes_yxyx.T
        assert np.all(np.minimum(y0, x0) >= 0) and np.all(np.maximum(y1, x1) <= image_size)
        np.testing.assert_allclose(y1 - y0, x1 - x0, atol=1e-3)
        assert np.all(y1 - y0 >= 4.3 * image_size / 200 - 1e-3)
        assert np.all(y1 - y0 <= 48.2 * image_size / 200 + 1e-3)
        assert galaxy.distractors_yx.dtype == np.float32 and galaxy.distractors_yx.shape[1] == 2
        assert galaxy.hii_regions_yx.dtype == np.float32 and galaxy.hii_regions_yx.shape[1] == 2
        for measure in (galaxy.snr, galaxy.contrast):
            assert measure.dtype == np.float32 and measure.shape == (n,)
            assert np.all(np.isfinite(measure) & (measure > 0))
        assert 0 <= galaxy.ra < 360 and -10 <= galaxy.dec <= 70 and 0.02 <= galaxy.redshift <= 0.25
        assert galaxy.image.std() > 5  # not a blank frame


def test_clump_counts_follow_clump_scout(galaxies):
    counts = np.array([len(g.labels) for g in galaxies])
    # The count's standard deviation is 1.25, so the standard error over 400 galaxies is 0.06.
    assert abs(counts.mean() - _MEAN_COUNT) < 0.2
    assert np.bincount(counts).argmax() == 2
    labels = np.concatenate([g.labels for g in galaxies])
    assert abs(labels.mean() - 0.276) < 0.05  # standard error 0.015


def test_box_sides_and_centres_follow_clump_scout(galaxies):
    boxes = np.concatenate([g.boxes_yxyx for g in galaxies])
    sides = boxes[:, 2] - boxes[:, 0]
    assert abs(np.median(sides) - 16.6) < 1.0
    p05, p95 = np.percentile(sides, [5, 95])
    assert abs(p05 - 9.1) < 1.0 and abs(p95 - 27.5) < 2.0
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    np.testing.assert_allclose(centres.mean(axis=0), 100.0, atol=5.0)
    np.testing.assert_allclose(centres.std(axis=0), 43.0, atol=4.0)
    multi = [g for g in galaxies if len(g.labels) > 1]
    # As in every real multi-box galaxy: one side for all of a galaxy's boxes.
    assert len(multi) > 200 and all(np.ptp(g.boxes_yxyx[:, 2:] - g.boxes_yxyx[:, :2]) < 1e-3 for g in multi)


def _draws(family: RenderFamily, n: int, image_size: int = 200):
    """(galaxies, their choices) of `n` galaxies of `family`, lengths of the choices in 200-px crop pixels."""
    galaxies = list(generate_galaxies(n, seed=31, image_size=image_size, family=family))
    scale = image_size / 200
    return galaxies, [dataclasses.replace(g.choices, psf_fwhm=g.choices.psf_fwhm / scale) for g in galaxies]


@pytest.mark.parametrize("family", [TRAINING_FAMILY, HELDOUT_FAMILY], ids=lambda f: f.name)
def test_render_choices_fall_in_their_familys_ranges(family):
    galaxies, choices = _draws(family, 150, image_size=96)
    assert {c.family for c in choices} == {family.name}
    for name, (low, high) in family.ranges().items():
        values = np.array([getattr(c, name) for c in choices])
        drawn = ~np.isnan(values)
        assert np.all((values[drawn] >= low * (1 - 1e-12)) & (values[drawn] <= high * (1 + 1e-12))), name
    # NaN exactly where a choice does not apply.
    for c in choices:
        assert math.isnan(c.moffat_beta) == (c.psf_shape != "moffat")
        assert math.isnan(c.side_per_psf_fwhm) == (c.box_side_rule != "psf")
        assert c.box_side_rule == "psf" or c.resolved_fraction == 1.0
    # Every option of the family is drawn, each about as often as it should be.
    assert {c.psf_shape for c in choices} == set(family.psf_shapes)
    assert {c.clump_profile for c in choices} == set(family.clump_profiles)
    psf_rule = np.mean([c.box_side_rule == "psf" for c in choices])
    assert abs(psf_rule - family.psf_side_fraction) < 0.15


def test_heldout_choices_lie_outside_the_training_ranges_where_they_differ():
    outside = [
        name
        for name, (low, high) in HELDOUT_FAMILY.ranges().items()
        if high <= TRAINING_FAMILY.ranges()[name][0] or low >= TRAINING_FAMILY.ranges()[name][1]
    ]
    assert set(outside) == {"moffat_beta", "lupton_stretch", "lupton_q", "sky_level", "bulge_sersic_n"}
    _, choices = _draws(HELDOUT_FAMILY, 60, image_size=96)
    for name in outside:
        low, high = TRAINING_FAMILY.ranges()[name]
        assert not any(low < getattr(c, name) < high for c in choices), name
    assert {c.psf_shape for c in choices} == {"moffat"} and {c.box_side_rule for c in choices} == {"psf"}


def test_box_side_rules():
    galaxies, choices = _draws(TRAINING_FAMILY, 150, image_size=96)
    bands = list(generate_bands(150, seed=31, image_size=96))
    for galaxy, c, truth in zip(galaxies, choices, bands):
        sides = galaxy.boxes_yxyx[:, 2:] - galaxy.boxes_yxyx[:, :2]
        np.testing.assert_allclose(sides, sides[0, 0], atol=1e-4)  # one side per galaxy, square boxes (float32)
        side = float(sides[0, 0])
        resolved = truth.clump_sigma[:, 0] > 0
        if c.box_side_rule == "psf":
            # The side is the PSF's, whatever the clumps look like.
            np.testing.assert_allclose(side, c.side_per_psf_fwhm * galaxy.choices.psf_fwhm, atol=1e-4)
            low, high = BOX_SIDE_PER_PSF_FWHM / 1.1, BOX_SIDE_PER_PSF_FWHM * 1.1
            assert low * (1 - 1e-4) <= side / galaxy.choices.psf_fwhm <= high * (1 + 1e-4)
        else:
            # The side can be read off the clump: a normal clump's size is 0.06-0.12 of it.
            assert np.all(resolved)
            normal = truth.clump_sigma[galaxy.labels == 0, 0] / side
            assert np.all((normal >= 0.06 * (1 - 1e-4)) & (normal <= 0.12 * (1 + 1e-4)))
        assert np.all(resolved[galaxy.labels == 1])  # odd clumps keep their shapes
    rule = np.array([c.box_side_rule for c in choices for _ in range(2)])
    assert set(rule) == {"psf", "light"}
    point_like = [s[0] == 0 for b in bands for s, label in zip(b.clump_sigma, b.galaxy.labels) if label == 0]
    assert 0.2 < np.mean(point_like) < 0.35  # half the galaxies, half their normal clumps on average


def test_psf_fwhm_and_clump_flux_are_exact_for_the_mixture_drawn():
    """A Moffat PSF's FWHM is its mixture's, and an isolated clump's flux is the light drawn."""
    choices = dataclasses.replace(generate_galaxy(3).choices, psf_shape="moffat", moffat_beta=2.5, psf_fwhm=3.3)
    psf = synthetic._psf(choices)
    assert psf.profile(choices.psf_fwhm / 2) == pytest.approx(psf.profile(0.0) / 2, rel=1e-12)
    # Against the analytic Moffat of the same FWHM: within 1% of the peak (`_MIXTURE_COMPONENTS`).
    alpha = choices.psf_fwhm / (2 * math.sqrt(2 ** (1 / 2.5) - 1))
    radius = np.linspace(0.0, 3 * choices.psf_fwhm, 50)
    moffat = 1.5 / (math.pi * alpha**2) * (1 + (radius / alpha) ** 2) ** -2.5
    mixture = np.array([psf.profile(r) for r in radius])
    assert np.max(np.abs(mixture - moffat)) < 0.01 * moffat[0]
    for source, sigmas in [(synthetic._POINT, (0.0, 0.0)), (synthetic._EXPONENTIAL, (2.0, 1.2))]:
        bands = np.zeros((5, 160, 160), np.float32)
        flux = np.array([1.0, 2.0, 30.0, 4.0, 5.0], np.float32)
        synthetic._add_blurred(bands, psf, source, 80.3, 79.6, *sigmas, 0.4, flux)
        np.testing.assert_allclose(bands.sum(axis=(1, 2)), flux, rtol=1e-4)
        # The central peak the flux is set from.
        peak = synthetic._blurred_peak(psf, source, *sigmas) * 30.0
        assert bands[2].max() == pytest.approx(peak, rel=0.05)  # pixel centres are off the clump's
    # The exponential clump has the half-light radius of the Gaussian of the same sigma.
    assert synthetic._EXPONENTIAL.half_light_radius() == pytest.approx(math.sqrt(2 * math.log(2)), rel=1e-12)


def test_bad_families_raise():
    with pytest.raises(ValueError, match="psf_shapes"):
        RenderFamily(name="x", psf_shapes=("airy",))
    with pytest.raises(ValueError, match="low <= high"):
        RenderFamily(name="x", lupton_q=(9.0, 3.0))
    with pytest.raises(ValueError, match="moffat_beta"):
        RenderFamily(name="x", moffat_beta=(0.5, 2.0))
    with pytest.raises(ValueError, match="psf_side_fraction"):
        RenderFamily(name="x", psf_side_fraction=1.5)


def test_box_sizes_scale_with_image_size():
    small = generate_galaxies(150, seed=5, image_size=100)
    sides = np.concatenate([g.boxes_yxyx[:, 2] - g.boxes_yxyx[:, 0] for g in small])
    assert abs(np.median(sides) - 8.3) < 0.8


def test_clumps_are_visible_and_normal_ones_are_blue(galaxies):
    brighter, bluer = {0: [], 1: []}, {0: [], 1: []}
    for galaxy in galaxies:
        pixels = galaxy.image.astype(np.float32)
        brightness, blue_minus_red = pixels.sum(axis=-1), pixels[..., 2] - pixels[..., 0]
        for (y0, x0, y1, x1), label in zip(galaxy.boxes_yxyx, galaxy.labels):
            cy, cx, half = (y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2
            # Box core against a square annulus just outside the box: the local disc.
            core, ring = _centre_and_ring(brightness, cy, cx, half / 2, 1.5 * half, square=True)
            brighter[label].append(core - ring)
            core, ring = _centre_and_ring(blue_minus_red, cy, cx, half / 2, 1.5 * half, square=True)
            bluer[label].append(core - ring)
    for label in (0, 1):
        assert np.mean(np.array(brighter[label]) > 0) > 0.95
    assert np.mean(np.array(bluer[0]) > 0) > 0.9
    # Odd clumps are drawn red: redder than their surroundings and than the normal clumps.
    assert np.mean(np.array(bluer[1]) < 0) > 0.9
    assert np.median(bluer[1]) < np.median(bluer[0])


def test_distractors_are_visible_unboxed_and_only_in_some_images(galaxies):
    # About 0.8 stars and 2.5 field galaxies per image (Poisson): exp(-3.3) = 4% have none.
    with_distractors = np.mean([len(g.distractors_yx) > 0 for g in galaxies])
    assert 0.9 < with_distractors < 0.995
    contrasts, saturated = [], []
    for galaxy in galaxies:
        brightness = galaxy.image.astype(np.float32).sum(axis=-1)
        for py, px in galaxy.distractors_yx:
            y0, x0, y1, x1 = galaxy.boxes_yxyx.T
            assert not np.any((y0 <= py) & (py <= y1) & (x0 <= px) & (px <= x1))
            core, ring = _centre_and_ring(brightness, py, px, 2.0, 9.0, square=False)
            contrasts.append(core - ring)
            saturated.append(galaxy.image[int(py), int(px)].max() >= 250)
    assert len(contrasts) > 100
    assert np.mean(np.array(contrasts) > 0) > 0.95
    assert 0.03 < np.mean(saturated) < 0.3  # some stars are bright; the field galaxies never are


def test_hii_regions_are_many_faint_and_unboxed(galaxies):
    counts = np.array([len(g.hii_regions_yx) for g in galaxies])
    # 60 per unit arm amplitude, amplitude uniform in [0, 0.5]: 15 on average, before the
    # ones too near a box or off the image are dropped.
    assert 8 < counts.mean() < 15 and np.mean(counts == 0) < 0.2
    knot_contrasts, clump_contrasts = [], []
    for galaxy in galaxies:
        brightness = galaxy.image.astype(np.float32).sum(axis=-1)
        y0, x0, y1, x1 = galaxy.boxes_yxyx.T
        for py, px in galaxy.hii_regions_yx:
            assert not np.any((y0 <= py) & (py <= y1) & (x0 <= px) & (px <= x1))
            core, ring = _centre_and_ring(brightness, py, px, 1.5, 5.0, square=False)
            knot_contrasts.append(core - ring)
        for box in galaxy.boxes_yxyx[galaxy.labels == 0]:
            cy, cx = (box[:2] + box[2:]) / 2
            core, ring = _centre_and_ring(brightness, cy, cx, 1.5, 5.0, square=False)
            clump_contrasts.append(core - ring)
    # Seen as knots more often than not, but far fainter than the clumps.
    assert np.mean(np.array(knot_contrasts) > 0) > 0.6
    assert np.median(knot_contrasts) < 0.3 * np.median(clump_contrasts)


def test_snr_and_contrast_grow_with_clump_brightness(monkeypatch):
    """The same galaxies with clumps 2x and 4x brighter: every clump's SNR and contrast grow."""
    snr, contrast = [], []
    for factor in (1.0, 2.0, 4.0):
        low, high = synthetic._CLUMP_CONTRAST_RANGE
        with monkeypatch.context() as patch:
            patch.setattr(synthetic, "_CLUMP_CONTRAST_RANGE", (factor * low, factor * high))
            galaxies = list(generate_galaxies(10, seed=8))
        snr.append(np.concatenate([g.snr for g in galaxies]))
        contrast.append(np.concatenate([g.contrast for g in galaxies]))
    assert np.all(np.diff(snr, axis=0) > 0)
    # The contrast counts the clump's light only, so it scales with it (other clumps' light
    # in the box is not in the denominator).
    np.testing.assert_allclose(contrast[1], 2 * contrast[0], rtol=1e-3)
    np.testing.assert_allclose(contrast[2], 4 * contrast[0], rtol=1e-3)


@pytest.mark.parametrize(
    "call",
    [
        lambda: generate_galaxy(-1),
        lambda: generate_galaxy(1.5),
        lambda: generate_galaxy(1, image_size=16),
        lambda: generate_galaxies(-1, seed=0),  # raises at the call, before iteration
        lambda: generate_galaxies(2, seed=-3),
        lambda: generate_galaxies(2, seed=0, image_size=200.0),
    ],
)
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()


def test_module_does_not_import_tensorflow():
    code = f"import sys; import {synthetic.__name__}; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
