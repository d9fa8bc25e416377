"""Seeded synthetic clumpy galaxies that look like Galaxy Zoo: Clump Scout SDSS gri crops.

Each galaxy is an inclined exponential disc (Sersic n=1) plus a Sersic bulge, with blue
star-forming clumps sampled from the disc light, PSF-blurred, seen through sky and Poisson noise
and mapped to an SDSS-like gri colour composite (i -> R, r -> G, g -> B) with the Lupton et al.
(2004) asinh stretch of FITS cutouts (`gsfc_tf.images.gri_composite`). Unlabelled sources that a
detector must learn to pass over never get a box: foreground stars; field galaxies behind and
beside the disc (Euclidean-like number counts, blue discs to red spheroids); and, along the spiral
arms, HII regions: many small, faint, unresolved knots that are not giant clumps.

Every labelled clump gets a square box centred on it, one side for all of a galaxy's boxes, as in
the volunteers' consensus boxes. "Odd" clumps (label 1) are red (bulge-like colours, as volunteers
flagged red or unusual clumps) and either elongated (axis ratio 0.25-0.5) or diffuse (2-3x wider,
lower surface brightness), so a detector can tell them apart by colour and shape.

A family of renderers, not one: each galaxy draws its renderer's choices (`RenderChoices`) from a
`RenderFamily` of ranges: the PSF's shape (Gaussian, SDSS's double Gaussian, Moffat) and FWHM; the
clumps' profile (Gaussian or exponential) and, where the box side follows the PSF, how many are
resolved rather than point-like; how the box side is set (`BOX_SIDE_RULES`); the composite's
stretch and Q; the residual sky pedestal and the noise; the bulge's Sersic index; the host's
colours. `TRAINING_FAMILY` makes the training data; `HELDOUT_FAMILY` lies outside it in several
ways and is for testing only. Every profile is a mixture of Gaussians (Moffat and exponential by
Gauss-Laguerre quadrature of their Gaussian scale mixtures), so compact sources are drawn
analytically and the disc and bulge are blurred with the mixture's transfer function; the truth
(fluxes, FWHM) is that of the mixture actually drawn. The choices come from a random stream of
their own, so one seed gives the same layout (clumps, places, brightness) in any family.

Each clump's signal-to-noise ratio and contrast are recorded (`SyntheticGalaxy.snr`, `.contrast`),
measured in the r band within its box, so evaluation can tell faint misses from bright ones.

`generate_bands` gives the same galaxies' linear u, g, r, i, z light with every clump's and the
host's true flux per band (`SyntheticBands`), the truth for photometry; u and z add no draw to a
galaxy's random stream, so its composite and boxes are those of `generate_galaxies`.

The box and count statistics below are those of the Galaxy Zoo: Clump Scout consensus boxes used by
Popp et al. 2024 (RASTI 3(1):174), measured in the central 200x200 crop from the authors'
`imageGroups_{train,valid}.pkl`. Lengths are in pixels of a 200-pixel crop and scale with
`image_size`.

Shape shorthand: H = W = image_size, N clumps (1..9), M stars and field galaxies, K HII regions,
G components of a Gaussian mixture.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from gsfc_tf.conventions import BOX_SIDE_PER_PSF_FWHM
from gsfc_tf.images import LUPTON_Q, LUPTON_STRETCH, gri_composite

__all__ = [
    "BOX_CENTRE_MEAN_PX",
    "BOX_CENTRE_STD_PX",
    "BOX_SIDE_MEDIAN_PX",
    "BOX_SIDE_P05_PX",
    "BOX_SIDE_P95_PX",
    "BOX_SIDE_RANGE_PX",
    "BOX_SIDE_RULES",
    "CLUMP_COUNT_HISTOGRAM",
    "CLUMP_PROFILES",
    "HELDOUT_FAMILY",
    "NANOMAGGIES_PER_UNIT",
    "ODD_FRACTION",
    "PSF_SHAPES",
    "REFERENCE_IMAGE_SIZE",
    "TRAINING_FAMILY",
    "RenderChoices",
    "RenderFamily",
    "SyntheticBands",
    "SyntheticGalaxy",
    "generate_bands",
    "generate_galaxies",
    "generate_galaxy",
    "psf_image",
]

# Galaxy Zoo: Clump Scout consensus boxes (Popp et al. 2024), 200-px crops, measured from the
# authors' imageGroups_{train,valid}.pkl.
REFERENCE_IMAGE_SIZE = 200
CLUMP_COUNT_HISTOGRAM = (5175, 8329, 3573, 1602, 710, 376, 137, 47, 7)  # galaxies with 1..9 clumps
ODD_FRACTION = 0.276
BOX_SIDE_MEDIAN_PX = 16.6
BOX_SIDE_P05_PX = 9.1
BOX_SIDE_P95_PX = 27.5
BOX_SIDE_RANGE_PX = (4.3, 48.2)
BOX_CENTRE_MEAN_PX = 100.0
BOX_CENTRE_STD_PX = 43.0

_Z95 = statistics.NormalDist().inv_cdf(0.95)
# A split log-normal: z ~ N(0, 1) maps monotonically to a side, so the median and the 5th/95th
# percentiles land exactly on the measured ones.
_LOG_SIDE_SIGMA_LOW = math.log(BOX_SIDE_MEDIAN_PX / BOX_SIDE_P05_PX) / _Z95
_LOG_SIDE_SIGMA_HIGH = math.log(BOX_SIDE_P95_PX / BOX_SIDE_MEDIAN_PX) / _Z95

PSF_SHAPES = ("gaussian", "double_gaussian", "moffat")
CLUMP_PROFILES = ("gaussian", "exponential")
# How a galaxy's one box side is set: "light", from the measured side distribution with the
# resolved clumps' sizes in proportion to it (so the side can be read off a clump); "psf", as
# a multiple of the PSF FWHM whatever the clumps look like (as a point-like clump's box would be).
BOX_SIDE_RULES = ("light", "psf")

BAND_NAMES = ("u", "g", "r", "i", "z")  # the order of every per-band array here
_GRI = slice(1, 4)  # g, r, i: the bands of the composite, drawn from the galaxy's main stream
_UZ = [BAND_NAMES.index("u"), BAND_NAMES.index("z")]  # drawn from a stream of their own
_R = BAND_NAMES.index("r")
# Per-band sky noise in r-band sky sigmas (at noise scale 1); as in SDSS, g and i are noisier than
# r, u and z more so.
_SKY_SIGMA = np.array([1.6, 1.1, 1.0, 1.4, 3.5], np.float32)
_GAIN = 4.0  # source counts per flux unit: Poisson variance is flux / _GAIN
# The generator's flux unit (r-band sky noise 1 per pixel at noise scale 1) in nanomaggies: puts
# the r-band sky noise near that of SDSS frames (a few hundredths of a nanomaggy per pixel).
NANOMAGGIES_PER_UNIT = 0.026
_DOUBLE_GAUSSIAN_WEIGHTS = (0.9, 0.1)  # SDSS's PSF model: a core and a 2x wider wing
_DOUBLE_GAUSSIAN_WING_SCALE = 2.0
# Gaussians per Moffat PSF and per exponential clump: the Moffat's profile within 1% of its peak
# for beta >= 2.5 (2% at 1.8), the exponential's within 7% of its peak outside 0.5 scale lengths
# (before the PSF smooths its cusp).
_MIXTURE_COMPONENTS = 4
_R_MINUS_I_PER_G_MINUS_R_SHIFT = 0.6  # a colour shift moves r - i by this much of g - r, as dust does
_CLUMP_SPREAD = 1.5  # clumps' radial scale over the disc's; gives BOX_CENTRE_{MEAN,STD}_PX
_STARS_PER_IMAGE = 0.8  # mean number of foreground stars in a crop
# A 200-px SDSS crop is 79" on a side: to r ~ 22.5 it holds a few field galaxies, most of them
# faint (counts rise steeply to the faint end), a few resolved.
_FIELD_GALAXIES_PER_IMAGE = 2.5
_FIELD_PEAK_RANGE = (2.0, 40.0)  # peak r surface brightness, in r-band sky sigmas
# Clumps' peak over the local disc plus 3 sky sigmas, log-uniform: from barely detectable to obvious.
_CLUMP_CONTRAST_RANGE = (0.5, 8.0)
# HII regions: unresolved knots on the arm crests, many where the arms are strong, each a small
# fraction of the local arm light; far fainter than the giant clumps.
_HII_REGIONS_PER_ARM_AMPLITUDE = 60.0
_HII_CONTRAST_RANGE = (0.15, 0.8)
_MIN_IMAGE_SIZE = 32
_U_MINUS_G_AT_ZERO = 0.2  # u - g = 0.2 + 2 (g - r); i - z = 0.6 (r - i): see `_colour_to_ugriz`
_U_MINUS_G_PER_G_MINUS_R = 2.0
_I_MINUS_Z_PER_R_MINUS_I = 0.6
_COUNT_PROBABILITIES = np.array(CLUMP_COUNT_HISTOGRAM, np.float64) / sum(CLUMP_COUNT_HISTOGRAM)


@dataclasses.dataclass(frozen=True)
class RenderFamily:
    """The ranges a galaxy's renderer choices are drawn from, one draw per galaxy.

    A range (low, high) is drawn uniformly, or log-uniformly where marked; a tuple of names is
    drawn from uniformly. Lengths are in pixels of a 200-px crop and scale with the image size.

    Attributes:
        name: what the family is called in `RenderChoices` and dataset descriptions.
        psf_shapes: from `PSF_SHAPES`.
        psf_fwhm: PSF full width at half maximum, px: distributed as the measured box sides over
            `BOX_SIDE_PER_PSF_FWHM` (median 3.3 px, 5-95% 1.8-5.5 px; Galaxy Zoo cutouts are
            scaled per galaxy, which widens SDSS's 0.9-1.8" seeing) and clipped to this range, so
            that the "psf" rule keeps the measured side distribution.
        moffat_beta: the Moffat PSF's beta (smaller: stronger wings).
        psf_side_fraction: the probability that a galaxy's box side follows the PSF ("psf" rule
            of `BOX_SIDE_RULES`; else "light").
        side_per_psf_fwhm: the "psf" rule's box side in PSF FWHMs, log-uniform.
        resolved_fraction: under the "psf" rule, the probability that a normal clump is resolved
            rather than point-like (the "light" rule resolves every clump: its side is read off them).
        clump_profiles: from `CLUMP_PROFILES`, the resolved clumps' profile.
        lupton_stretch, lupton_q: the composite's stretch (nanomaggies, log-uniform) and Q
            (`gsfc_tf.images.gri_composite`).
        sky_level: residual sky pedestal left by the sky subtraction, in each band's sky sigmas.
        noise_scale: sky noise over the reference (`_SKY_SIGMA`).
        bulge_sersic_n: the bulge's Sersic index.
        colour_shift: g - r added to all of the host's own light (disc, bulge, clumps, HII
            regions; r - i moves by 0.6 of it, as with dust), mag.
    """

    name: str
    psf_shapes: tuple[str, ...] = PSF_SHAPES
    psf_fwhm: tuple[float, float] = (1.5, 7.0)
    moffat_beta: tuple[float, float] = (2.5, 4.5)
    psf_side_fraction: float = 0.5
    side_per_psf_fwhm: tuple[float, float] = (BOX_SIDE_PER_PSF_FWHM / 1.1, BOX_SIDE_PER_PSF_FWHM * 1.1)
    resolved_fraction: tuple[float, float] = (0.0, 1.0)
    clump_profiles: tuple[str, ...] = CLUMP_PROFILES
    lupton_stretch: tuple[float, float] = (LUPTON_STRETCH / 1.25, LUPTON_STRETCH * 1.25)
    lupton_q: tuple[float, float] = (LUPTON_Q - 3.0, LUPTON_Q + 3.0)
    sky_level: tuple[float, float] = (-0.2, 0.2)
    noise_scale: tuple[float, float] = (0.8, 1.25)
    bulge_sersic_n: tuple[float, float] = (1.5, 4.5)
    colour_shift: tuple[float, float] = (-0.1, 0.1)

    def __post_init__(self):
        for name, allowed in (("psf_shapes", PSF_SHAPES), ("clump_profiles", CLUMP_PROFILES)):
            values = getattr(self, name)
            if not values or not set(values) <= set(allowed):
                raise ValueError(f"{name} must be a non-empty tuple of {allowed}, got {values!r}")
        if not 0.0 <= self.psf_side_fraction <= 1.0:
            raise ValueError(f"psf_side_fraction must be in [0, 1], got {self.psf_side_fraction!r}")
        for name, (low, high) in self.ranges().items():
            if not low <= high:
                raise ValueError(f"{name} must be a range (low, high) with low <= high, got {(low, high)!r}")
        for name in ("psf_fwhm", "side_per_psf_fwhm", "lupton_stretch", "lupton_q", "noise_scale", "bulge_sersic_n"):
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.moffat_beta[0] <= 1.0:
            raise ValueError(f"moffat_beta must exceed 1 (a finite flux), got {self.moffat_beta!r}")
        if not (0.0 <= self.resolved_fraction[0] and self.resolved_fraction[1] <= 1.0):
            raise ValueError(f"resolved_fraction must lie in [0, 1], got {self.resolved_fraction!r}")

    def ranges(self) -> dict[str, tuple[float, float]]:
        """The (low, high) fields by name; each names the `RenderChoices` field drawn from it."""
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.name not in ("name", "psf_shapes", "psf_side_fraction", "clump_profiles")
        }


@dataclasses.dataclass(frozen=True)
class RenderChoices:
    """One galaxy's draws from its `RenderFamily`; lengths in pixels of the galaxy's image.

    Attributes:
        family: the `RenderFamily.name` drawn from.
        psf_shape: from `PSF_SHAPES`.
        psf_fwhm: the PSF's full width at half maximum, px: that of the Gaussian mixture drawn, exactly.
        moffat_beta: the Moffat PSF's beta; NaN for the other shapes.
        box_side_rule: from `BOX_SIDE_RULES`.
        side_per_psf_fwhm: the "psf" rule's box side over `psf_fwhm`; NaN under "light".
        resolved_fraction: the probability that a normal clump is resolved rather than point-like
            (1 under the "light" rule).
        clump_profile: the resolved clumps' profile, from `CLUMP_PROFILES`.
        lupton_stretch, lupton_q: the composite's stretch (nanomaggies) and Q.
        sky_level: residual sky pedestal, in each band's sky sigmas.
        noise_scale: sky noise over the reference.
        bulge_sersic_n: the bulge's Sersic index.
        colour_shift: g - r added to the host's own light, mag.
    """

    family: str
    psf_shape: str
    psf_fwhm: float
    moffat_beta: float
    box_side_rule: str
    side_per_psf_fwhm: float
    resolved_fraction: float
    clump_profile: str
    lupton_stretch: float
    lupton_q: float
    sky_level: float
    noise_scale: float
    bulge_sersic_n: float
    colour_shift: float


TRAINING_FAMILY = RenderFamily(name="training")
# For testing only, never for training or model selection: outside TRAINING_FAMILY in its PSF
# (Moffat with stronger wings), its composite (a softer stretch and higher Q), its sky (a brighter
# residual pedestal) and its bulges (steeper); every box side follows the PSF, as in real
# catalogues whose side is set per cutout. Still SDSS-like pictures.
HELDOUT_FAMILY = RenderFamily(
    name="heldout",
    psf_shapes=("moffat",),
    moffat_beta=(1.8, 2.5),
    psf_side_fraction=1.0,
    lupton_stretch=(LUPTON_STRETCH * 1.25, LUPTON_STRETCH * 1.5),
    lupton_q=(LUPTON_Q + 3.0, LUPTON_Q + 6.0),
    sky_level=(0.2, 0.5),
    bulge_sersic_n=(4.5, 6.0),
)


@dataclasses.dataclass(frozen=True)
class SyntheticGalaxy:
    """One synthetic galaxy crop with its clump boxes.

    Attributes:
        image: uint8 [H, W, 3] gri composite (R = i, G = r, B = g).
        boxes_yxyx: float32 [N, 4] square clump boxes, absolute pixels (y0, x0, y1, x1), inside the
            image, all with one side.
        labels: int64 [N], 0 = clump, 1 = odd clump.
        ra: right ascension in degrees, [0, 360).
        dec: declination in degrees, [-10, 70].
        redshift: redshift, [0.02, 0.25].
        distractors_yx: float32 [M, 2] centres (y, x) of the unlabelled stars and field galaxies.
        hii_regions_yx: float32 [K, 2] centres (y, x) of the unlabelled HII-region knots.
        snr: float32 [N] each clump's signal-to-noise ratio: its r-band flux within its box over
            the noise there, sqrt(sky variance x pixels + Poisson variance of all the box's light).
        contrast: float32 [N] each clump's r-band flux within its box over that of the galaxy's
            disc and bulge there.
        choices: how the galaxy was rendered, drawn from its `RenderFamily`.
    """

    image: np.ndarray
    boxes_yxyx: np.ndarray
    labels: np.ndarray
    ra: float
    dec: float
    redshift: float
    distractors_yx: np.ndarray
    hii_regions_yx: np.ndarray
    snr: np.ndarray
    contrast: np.ndarray
    choices: RenderChoices


@dataclasses.dataclass(frozen=True)
class SyntheticBands:
    """One synthetic galaxy's linear u, g, r, i, z light and the true fluxes behind it.

    Fluxes are in the generator's unit, in which the r-band sky noise is 1 per pixel at noise scale
    1. A clump's flux is its whole PSF-blurred light (over the plane, also what falls off the
    image). The host is the galaxy's own light: disc, bulge, HII regions and clumps, not the
    foreground stars and field galaxies nor the sky pedestal; its flux is that light's noise-free
    sum over the image, which is all a measurement on the crop can recover.

    Attributes:
        galaxy: the `SyntheticGalaxy` (composite, boxes, labels, render choices...), the same as
            `generate_galaxy` and `generate_galaxies` give for the same seed and family.
        images: float32 [5, H, W] u, g, r, i, z (`BAND_NAMES`) with sky and Poisson noise and the
            sky pedestal (`galaxy.choices.sky_level`), top row first like `galaxy.image`; g, r, i
            are the planes of the composite.
        sky_sigma: float32 [5] per-band sky noise per pixel.
        gain: Poisson counts per flux unit (variance of a pixel = sky_sigma**2 + light / gain).
        psf_fwhm: full width at half maximum of the PSF, px (every band; `galaxy.choices.psf_fwhm`).
        clump_yx: float32 [N, 2] true clump centres (y, x), px, in the image frame (the box centres).
        clump_flux: float64 [N, 5] each clump's total flux per band.
        clump_sigma: float32 [N, 2] each clump's intrinsic size before the PSF, px: the sigmas
            (major, minor) of the Gaussian with its half-light radius; 0 for a point-like clump.
        host_flux: float64 [5] the host's flux per band.
        host_yx: (y, x) of the host's centre, px, image frame.
        host_axis_ratio: minor over major axis of the inclined disc.
        host_scale_length: the disc's exponential scale length, px (half light at 1.678 of it).
    """

    galaxy: SyntheticGalaxy
    images: np.ndarray
    sky_sigma: np.ndarray
    gain: float
    psf_fwhm: float
    clump_yx: np.ndarray
    clump_flux: np.ndarray
    clump_sigma: np.ndarray
    host_flux: np.ndarray
    host_yx: tuple[float, float]
    host_axis_ratio: float
    host_scale_length: float


def generate_galaxy(
    seed: int, *, image_size: int = REFERENCE_IMAGE_SIZE, family: RenderFamily = TRAINING_FAMILY
) -> SyntheticGalaxy:
    """Draws one galaxy, the same for the same `seed`, `image_size` and `family`.

    Args:
        seed: non-negative integer seed.
        image_size: side H = W of the square image in pixels (>= 32); all lengths scale with it.
        family: the ranges its renderer's choices are drawn from.

    Returns:
        A `SyntheticGalaxy` with a [H, W, 3] uint8 image and N in 1..9 boxes.
    """
    _check_integer("seed", seed, minimum=0)
    _check_integer("image_size", image_size, minimum=_MIN_IMAGE_SIZE)
    return _draw(np.random.default_rng(seed), image_size, family).galaxy


def generate_galaxies(
    n: int, *, seed: int, image_size: int = REFERENCE_IMAGE_SIZE, family: RenderFamily = TRAINING_FAMILY
) -> Iterator[SyntheticGalaxy]:
    """Lazily draws `n` independent galaxies; galaxy k depends on (seed, k) only, not on `n`.

    Args:
        n: number of galaxies (>= 0).
        seed: non-negative integer seed.
        image_size: side H = W of the square images in pixels (>= 32).
        family: the ranges their renderer's choices are drawn from, one draw per galaxy.

    Returns:
        An iterator of `SyntheticGalaxy` objects, as in `generate_galaxy`.
    """
    return (bands.galaxy for bands in generate_bands(n, seed=seed, image_size=image_size, family=family))


def generate_bands(
    n: int, *, seed: int, image_size: int = REFERENCE_IMAGE_SIZE, family: RenderFamily = TRAINING_FAMILY
) -> Iterator[SyntheticBands]:
    """Lazily draws the u, g, r, i, z light and true fluxes of the galaxies of `generate_galaxies`.

    Galaxy k's `.galaxy` is exactly `generate_galaxies(n, seed=seed, image_size=image_size,
    family=family)`'s k-th: u and z add no draw to the galaxy's random stream (their colours
    follow from g - r and r - i, their noise comes from a stream spawned from the galaxy's seed).

    Args:
        n: number of galaxies (>= 0).
        seed: non-negative integer seed.
        image_size: side H = W of the square images in pixels (>= 32).
        family: the ranges their renderer's choices are drawn from, one draw per galaxy.

    Returns:
        An iterator of `SyntheticBands` objects.
    """
    _check_integer("n", n, minimum=0)
    _check_integer("seed", seed, minimum=0)
    _check_integer("image_size", image_size, minimum=_MIN_IMAGE_SIZE)
    # Child k of a SeedSequence is fixed by its spawn key (k,), whatever the number spawned.
    children = np.random.SeedSequence(seed).spawn(n)
    # Arguments are checked above, at the call, rather than at the first `next`.
    return (_draw(np.random.default_rng(child), image_size, family) for child in children)


def _check_integer(name: str, value: int, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


@functools.lru_cache(maxsize=8)
def _pixel_centres(image_size: int) -> np.ndarray:
    """float32 [H]: pixel centres in the continuous frame where pixel i spans [i, i + 1)."""
    centres = np.arange(image_size, dtype=np.float32) + 0.5
    centres.setflags(write=False)
    return centres


def _colour_to_ugriz(g_minus_r: float, r_minus_i: float) -> np.ndarray:
    """float32 [5]: u, g, r, i, z fluxes of a source with unit r flux and the given colours.

    u and z follow from g - r and r - i on rough linear colour-colour relations of galaxies and
    stars (u - g from 0.4 for young clumps to 1.9 for bulges, i - z = 0.6 (r - i)), so they need no
    random draw and the g, r, i light does not depend on them.
    """
    g, i = 10 ** (-0.4 * g_minus_r), 10 ** (0.4 * r_minus_i)
    u_minus_g = _U_MINUS_G_AT_ZERO + _U_MINUS_G_PER_G_MINUS_R * g_minus_r
    i_minus_z = _I_MINUS_Z_PER_R_MINUS_I * r_minus_i
    return np.array([g * 10 ** (-0.4 * u_minus_g), g, 1.0, i, i * 10 ** (0.4 * i_minus_z)], np.float32)


def _host_ugriz(g_minus_r: float, r_minus_i: float, choices: RenderChoices) -> np.ndarray:
    """`_colour_to_ugriz` of light of the host galaxy, moved by the galaxy's colour shift."""
    shift = choices.colour_shift
    return _colour_to_ugriz(g_minus_r + shift, r_minus_i + _R_MINUS_I_PER_G_MINUS_R_SHIFT * shift)


class _Mixture(NamedTuple):
    """A circular profile as a mixture of Gaussians of unit flux: weights [G] (sum 1), variances [G] px^2."""

    weights: np.ndarray
    variances: np.ndarray

    def scaled(self, length: float) -> _Mixture:
        return _Mixture(self.weights, self.variances * length**2)

    def profile(self, radius: float) -> float:
        """Surface brightness at `radius` (flux 1); variances must be positive."""
        return sum(w / (2 * math.pi * v) * math.exp(-0.5 * radius**2 / v) for w, v in zip(*self))

    def enclosed(self, radius: float) -> float:
        """Flux within `radius` (flux 1)."""
        return sum(w * (1 - math.exp(-0.5 * radius**2 / v)) for w, v in zip(*self))

    def fwhm(self) -> float:
        return 2 * _falls_to(self.profile, self.profile(0.0) / 2)

    def half_light_radius(self) -> float:
        return _falls_to(lambda radius: 1 - self.enclosed(radius), 0.5)


def _falls_to(decreasing, level: float) -> float:
    """The radius where the decreasing function of radius `decreasing` falls to `level` (bisection)."""
    low, high = 0.0, 1.0
    while decreasing(high) > level:
        high *= 2
    for _ in range(60):  # down to double precision
        middle = (low + high) / 2
        low, high = (middle, high) if decreasing(middle) > level else (low, middle)
    return (low + high) / 2


def _gamma_quadrature(shape: float) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Laguerre nodes x [G] and weights w [G] of Gamma(shape, scale 1): sum w f(x) ~ E f(X).

    Golub-Welsch: the nodes are the eigenvalues of the generalised Laguerre polynomials' Jacobi
    matrix (alpha = shape - 1), the weights the squared first components of its eigenvectors.
    """
    k = np.arange(_MIXTURE_COMPONENTS, dtype=np.float64)
    off_diagonal = np.sqrt(k[1:] * (k[1:] + shape - 1))
    jacobi = np.diag(2 * k + shape) + np.diag(off_diagonal, 1) + np.diag(off_diagonal, -1)
    nodes, vectors = np.linalg.eigh(jacobi)
    weights = vectors[0] ** 2
    return nodes, weights / weights.sum()


def _with_fwhm(mixture: _Mixture, fwhm: float) -> _Mixture:
    return mixture.scaled(fwhm / mixture.fwhm())


def _moffat(beta: float, fwhm: float) -> _Mixture:
    """A Moffat profile (1 + r^2 / alpha^2)^-beta of the given FWHM.

    It is exactly a mixture of Gaussians whose precision (1 / variance) is Gamma(beta - 1)
    distributed; G-point quadrature of that mixture follows the Moffat (`_MIXTURE_COMPONENTS`),
    with wings that fade faster beyond a few FWHM.
    """
    nodes, weights = _gamma_quadrature(beta - 1)
    return _with_fwhm(_Mixture(weights, 1 / nodes), fwhm)


def _exponential_mixture() -> _Mixture:
    """An exponential profile exp(-r / h) as a mixture, with the half-light radius of a unit-sigma Gaussian.

    It is exactly a mixture of Gaussians whose variance, weighted by flux, is Gamma(3/2) distributed.
    """
    nodes, weights = _gamma_quadrature(1.5)
    exponential = _Mixture(weights, nodes)
    return exponential.scaled(_GAUSSIAN.half_light_radius() / exponential.half_light_radius())


_GAUSSIAN = _Mixture(np.ones(1), np.ones(1))
_POINT = _Mixture(np.ones(1), np.zeros(1))  # a point source: only the PSF's own components
_EXPONENTIAL = _exponential_mixture()
_DOUBLE_GAUSSIAN = _Mixture(np.array(_DOUBLE_GAUSSIAN_WEIGHTS), np.array([1.0, _DOUBLE_GAUSSIAN_WING_SCALE**2]))


def _psf(choices: RenderChoices) -> _Mixture:
    """The galaxy's PSF, of FWHM `choices.psf_fwhm` exactly."""
    if choices.psf_shape == "moffat":
        return _moffat(choices.moffat_beta, choices.psf_fwhm)
    unit = _GAUSSIAN if choices.psf_shape == "gaussian" else _DOUBLE_GAUSSIAN
    return _with_fwhm(unit, choices.psf_fwhm)


def psf_image(choices: RenderChoices) -> np.ndarray:
    """float32 [S, S] the galaxy's PSF (`_psf`) sampled at pixel centres as its sources are, centred on
    the central pixel of an odd stamp reaching 5 sigma of its widest Gaussian (at most 12 FWHM)
    from it: what a survey's PSF model gives photometry (`gsfc_tf.bands`' PSF images)."""
    psf = _psf(choices)
    half = math.ceil(min(5 * math.sqrt(psf.variances.max()), 12 * choices.psf_fwhm))
    stamp = np.zeros((1, 2 * half + 1, 2 * half + 1))
    for weight, variance in zip(*psf):
        _add_gaussian(stamp, half + 0.5, half + 0.5, variance, variance, 0.0, np.array([weight]))
    return stamp[0].astype(np.float32)


def _log_uniform(rng: np.random.Generator, low_high: tuple[float, float]) -> float:
    low, high = low_high
    return low * (high / low) ** rng.uniform()  # exactly `low` when high == low


def _draw_choices(rng: np.random.Generator, family: RenderFamily, scale: float) -> RenderChoices:
    """One galaxy's `RenderChoices` from `family`; `scale` is the image size over 200 px."""
    psf_shape = family.psf_shapes[rng.integers(len(family.psf_shapes))]
    psf_fwhm = float(np.clip(_measured_side(rng) / BOX_SIDE_PER_PSF_FWHM, *family.psf_fwhm)) * scale
    box_side_rule = "psf" if rng.random() < family.psf_side_fraction else "light"
    return RenderChoices(
        family=family.name,
        psf_shape=psf_shape,
        psf_fwhm=psf_fwhm,
        moffat_beta=rng.uniform(*family.moffat_beta) if psf_shape == "moffat" else math.nan,
        box_side_rule=box_side_rule,
        side_per_psf_fwhm=_log_uniform(rng, family.side_per_psf_fwhm) if box_side_rule == "psf" else math.nan,
        resolved_fraction=rng.uniform(*family.resolved_fraction) if box_side_rule == "psf" else 1.0,
        clump_profile=family.clump_profiles[rng.integers(len(family.clump_profiles))],
        lupton_stretch=_log_uniform(rng, family.lupton_stretch),
        lupton_q=rng.uniform(*family.lupton_q),
        sky_level=rng.uniform(*family.sky_level),
        noise_scale=rng.uniform(*family.noise_scale),
        bulge_sersic_n=rng.uniform(*family.bulge_sersic_n),
        colour_shift=rng.uniform(*family.colour_shift),
    )
def _plane_coordinates(cy, cx, axis_ratio, angle, y, x):
    """(major, minor / axis_ratio) of (y, x) for an ellipse at (cy, cx), `angle` radians from +x.

    For an inclined disc these are coordinates in the disc plane.
    """
    dy, dx = y - cy, x - cx
    cos, sin = math.cos(angle), math.sin(angle)
    return dx * cos + dy * sin, (dy * cos - dx * sin) / axis_ratio


def _elliptical_radius(cy, cx, axis_ratio, angle, y, x):
    """Major-axis radius of the ellipse through (y, x); see `_plane_coordinates`."""
    return np.hypot(*_plane_coordinates(cy, cx, axis_ratio, angle, y, x))


def _fast_fft_size(minimum: int) -> int:
    """The smallest size >= `minimum` with no prime factor above 5 (fast for pocketfft)."""
    size = minimum
    while True:
        rest = size
        for prime in (2, 3, 5):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return size
        size += 1


def _blur(profiles, psf: _Mixture):
    """Convolves each [H, W] profile with the PSF; no light comes from off-frame.

    The PSF's transfer function is its Gaussians' in closed form. numpy's FFT is single-threaded,
    which keeps this fast when several processes share the CPU (multi-threaded BLAS products were
    5-10x slower there). Zero padding by 5 sigmas of the widest Gaussian stops light wrapping round
    the edges.
    """
    size = profiles[0].shape[0]
    padded = _fast_fft_size(size + math.ceil(5 * math.sqrt(psf.variances.max())))
    frequency_sq = np.fft.fftfreq(padded)[:, None] ** 2 + np.fft.rfftfreq(padded)[None, :] ** 2
    transfer = sum(weight * np.exp(-2 * math.pi**2 * var * frequency_sq) for weight, var in zip(*psf))
    shape = (padded, padded)
    return [
        np.fft.irfft2(np.fft.rfft2(profile, s=shape) * transfer, s=shape)[:size, :size]
        for profile in profiles
    ]


def _add_gaussian(bands, cy, cx, var_major, var_minor, angle, flux_ugriz):
    """Adds an elliptical Gaussian of total flux `flux_ugriz` [5] to `bands` [5, H, W] in place.

    Only a +-5 sigma stamp is evaluated, which keeps the many compact sources cheap.
    """
    image_size = bands.shape[-1]
    half = 5.0 * math.sqrt(var_major)
    y0, y1 = max(0, int(cy - half)), min(image_size, int(cy + half) + 1)
    x0, x1 = max(0, int(cx - half)), min(image_size, int(cx + half) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    centres = _pixel_centres(image_size)
    y, x = centres[y0:y1, None], centres[None, x0:x1]
    major, minor = _plane_coordinates(cy, cx, 1.0, angle, y, x)
    profile = np.exp(-0.5 * (major * major / var_major + minor * minor / var_minor))
    profile *= 1.0 / (2 * math.pi * math.sqrt(var_major * var_minor))
    bands[:, y0:y1, x0:x1] += flux_ugriz[:, None, None] * profile


def _add_blurred(bands, psf: _Mixture, source: _Mixture, cy, cx, sigma_major, sigma_minor, angle, flux_ugriz):
    """Adds a source blurred by the PSF: each pair of Gaussians adds its variances.

    `source` is the source's profile for unit sigmas, stretched to (`sigma_major`, `sigma_minor`)
    along its axes at `angle`; `flux_ugriz` [5] its total flux.
    """
    for psf_weight, psf_var in zip(*psf):
        for weight, var in zip(*source):
            var_major, var_minor = var * sigma_major**2 + psf_var, var * sigma_minor**2 + psf_var
            _add_gaussian(bands, cy, cx, var_major, var_minor, angle, psf_weight * weight * flux_ugriz)


def _blurred_peak(psf: _Mixture, source: _Mixture, sigma_major, sigma_minor) -> float:
    """The central surface brightness of a source of unit flux blurred by the PSF (`_add_blurred`)."""
    return sum(
        psf_weight * weight / (2 * math.pi * math.sqrt((var * sigma_major**2 + psf_var) * (var * sigma_minor**2 + psf_var)))
        for psf_weight, psf_var in zip(*psf)
        for weight, var in zip(*source)
    )


def _measured_side(rng) -> float:
    """A box side drawn from the measured Clump Scout distribution, px of a 200-px crop."""
    z = rng.standard_normal()
    log_sigma = _LOG_SIDE_SIGMA_LOW if z < 0 else _LOG_SIDE_SIGMA_HIGH
    return float(np.clip(BOX_SIDE_MEDIAN_PX * math.exp(z * log_sigma), *BOX_SIDE_RANGE_PX))


@dataclasses.dataclass(frozen=True)
class _Disc:
    """Geometry and brightness of the host disc, in pixels and r-band flux per pixel."""

    cy: float
    cx: float
    axis_ratio: float
    angle: float
    scale_length: float
    peak: float
    bulge_re: float

    def radius(self, y, x):
        return _elliptical_radius(self.cy, self.cx, self.axis_ratio, self.angle, y, x)

    def surface_brightness(self, y, x):
        return self.peak * np.exp(-self.radius(y, x) / self.scale_length)

    def image_position(self, u, v):
        """(y, x) of the disc-plane point (u along the major axis, v along the minor one, unforeshortened)."""
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        return self.cy + u * sin + v * self.axis_ratio * cos, self.cx + u * cos - v * self.axis_ratio * sin

    def spiral_arms(self, y, x, amplitude, pitch, phase):
        """Multiplicative two-armed logarithmic spiral, fading out towards the centre."""
        u, v = _plane_coordinates(self.cy, self.cx, self.axis_ratio, self.angle, y, x)
        radius = np.hypot(u, v) / self.scale_length + 1e-3
        winding = 2 * (np.arctan2(v, u) - np.log(radius) / math.tan(pitch)) + phase
        return 1 + amplitude * (1 - np.exp(-radius)) * np.cos(winding)


def _draw_disc(rng: np.random.Generator, image_size: int, scale: float, redshift: float) -> _Disc:
    """The galaxy's disc and bulge geometry and brightness (draws in `_draw`'s fixed order)."""
    # Crops are centred on the galaxy, so its offset is small.
    cy, cx = image_size / 2 + rng.normal(0.0, 3.0 * scale, size=2)
    cos_inclination = rng.uniform(0.3, 1.0)
    dimming = (1.05 / (1 + redshift)) ** 4  # Tolman surface-brightness dimming
    return _Disc(
        cy=float(cy),
        cx=float(cx),
        axis_ratio=math.sqrt(cos_inclination**2 * (1 - 0.15**2) + 0.15**2),  # thickness 0.15
        angle=rng.uniform(0.0, math.pi),
        scale_length=rng.uniform(26.0, 46.0) * scale,
        peak=10 ** rng.uniform(math.log10(15.0), math.log10(80.0)) * dimming,
        bulge_re=rng.uniform(2.5, 7.0) * scale,
    )


def _sersic_b(n: float) -> float:
    """Sersic b_n (half the light inside R_e): Ciotti & Bertin (1999)'s series, good to 1e-6 for n > 0.36."""
    return 2 * n - 1 / 3 + 4 / (405 * n) + 46 / (25515 * n**2)


def _galaxy_light(rng: np.random.Generator, disc: _Disc, arms: _Arms, y, x, psf: _Mixture, choices: RenderChoices):
    """The disc (with its arms) and bulge in u, g, r, i, z, blurred by the PSF, before any compact source.

    Returns:
        (bands float32 [5, H, W] (`BAND_NAMES`), the unblurred disc light [H, W] that places HII regions).
    """
    disc_light = disc.surface_brightness(y, x) * disc.spiral_arms(y, x, arms.amplitude, arms.pitch, arms.phase)
    # The bulge is rounder than the disc; 0.5 px of softening keeps its cusp off one pixel.
    bulge_q = math.sqrt(disc.axis_ratio)
    bulge_radius = _elliptical_radius(disc.cy, disc.cx, bulge_q, disc.angle, y, x)
    n = choices.bulge_sersic_n
    bulge = np.exp(-_sersic_b(n) * ((np.hypot(bulge_radius, 0.5) / disc.bulge_re) ** (1 / n) - 1))
    disc_flux = 2 * math.pi * disc.scale_length**2 * disc.axis_ratio * disc.peak
    bulge *= rng.uniform(0.05, 0.6) * disc_flux / bulge.sum()
    blurred_disc, bulge = _blur([disc_light, bulge], psf)
    disc_ugriz = _host_ugriz(rng.normal(0.35, 0.06), rng.normal(0.15, 0.04), choices)
    bulge_ugriz = _host_ugriz(rng.normal(0.85, 0.05), rng.normal(0.38, 0.03), choices)
    bands = blurred_disc[None] * disc_ugriz[:, None, None] + bulge[None] * bulge_ugriz[:, None, None]
    return bands.astype(np.float32), disc_light


def _draw(rng: np.random.Generator, image_size: int, family: RenderFamily) -> SyntheticBands:
    """Draws the render choices and the layout, renders the ugriz light, adds noise and maps gri to an 8-bit composite.

    The choices come from a stream of their own, so the layout's draws do not depend on the family's
    ranges. Only g, r and i draw from `rng`; u and z take their noise from a stream spawned from
    `rng`'s seed, which leaves `rng`'s state alone.
    """
    scale = image_size / REFERENCE_IMAGE_SIZE
    centres = _pixel_centres(image_size)
    y, x = centres[:, None], centres[None, :]
    choices_rng, uz_rng = rng.spawn(2)
    choices = _draw_choices(choices_rng, family, scale)
    psf = _psf(choices)
    sky_sigma = _SKY_SIGMA * np.float32(choices.noise_scale)

    redshift = float(rng.uniform(0.02, 0.25))
    ra = float(rng.uniform(0.0, 360.0))
    # Uniform over the sky area of the SDSS declination band.
    sin_dec = rng.uniform(math.sin(math.radians(-10.0)), math.sin(math.radians(70.0)))
    dec = float(np.degrees(np.arcsin(sin_dec)))
    disc = _draw_disc(rng, image_size, scale, redshift)

    count = int(rng.choice(len(CLUMP_COUNT_HISTOGRAM), p=_COUNT_PROBABILITIES)) + 1
    labels = (rng.random(count) < ODD_FRACTION).astype(np.int64)
    # One side per galaxy, as in the real Clump Scout consensus labels: every one of their 14,781
    # galaxies with several boxes has a single box side (../shared/data/clumpscout_labels). The
    # resolved clumps' sizes follow `light_side` under either rule; the "psf" rule boxes them by
    # the PSF instead, so their light no longer tells the side.
    light_side = _measured_side(rng) * scale
    side = light_side if choices.box_side_rule == "light" else choices.side_per_psf_fwhm * choices.psf_fwhm
    sides = np.full(count, side, np.float32)
    clump_yx = _place_clumps(rng, disc, sides, image_size)
    half_sides = sides[:, None] / 2
    boxes_yxyx = np.concatenate([clump_yx - half_sides, clump_yx + half_sides], axis=1)

    arms = _Arms(
        amplitude=rng.uniform(0.0, 0.5),
        pitch=math.radians(rng.uniform(12.0, 30.0)),
        phase=rng.uniform(0.0, 2 * math.pi),
    )
    bands, disc_light = _galaxy_light(rng, disc, arms, y, x, psf, choices)
    galaxy_r = bands[_R].copy()  # the disc and bulge alone, for the clumps' contrast

    hii_regions_yx = _add_hii_regions(rng, bands, disc, arms, disc_light, boxes_yxyx, psf, choices)
    # Compact sources are added already blurred: Gaussian variances add.
    clumps = _add_clumps(rng, bands, disc, clump_yx, boxes_yxyx, light_side, labels, psf, choices)
    host_flux = bands.sum(axis=(1, 2), dtype=np.float64)  # before stars and field galaxies
    distractors_yx = _add_stars(rng, bands, boxes_yxyx, psf, choices.psf_fwhm)
    distractors_yx += _add_field_galaxies(rng, bands, boxes_yxyx, psf, choices.psf_fwhm)
    snr, contrast = _clump_snr_and_contrast(
        clumps.flux_in_box_r, bands[_R], galaxy_r, boxes_yxyx, float(sky_sigma[_R])
    )

    noise_sigma = np.sqrt(sky_sigma[:, None, None] ** 2 + np.maximum(bands, 0.0) / _GAIN)
    noise = np.empty_like(bands)
    noise[_GRI] = rng.standard_normal(noise[_GRI].shape, dtype=np.float32)
    noise[_UZ] = uz_rng.standard_normal(noise[_UZ].shape, dtype=np.float32)
    # The pedestal is what the sky subtraction left: its noise is the sky noise already drawn.
    bands += noise_sigma * noise + np.float32(choices.sky_level) * sky_sigma[:, None, None]
    # In nanomaggies exactly as `synthetic_fits` writes them, so a FITS reader given the same
    # stretch and Q makes this composite.
    image = gri_composite(
        *(bands[_GRI] * np.float32(NANOMAGGIES_PER_UNIT)),
        lupton_q=choices.lupton_q,
        lupton_stretch=choices.lupton_stretch,
    )

    galaxy = SyntheticGalaxy(
        image=image,
        boxes_yxyx=boxes_yxyx.astype(np.float32),
        labels=labels,
        ra=ra,
        dec=dec,
        redshift=redshift,
        distractors_yx=np.array(distractors_yx, np.float32).reshape(-1, 2),
        hii_regions_yx=hii_regions_yx,
        snr=snr,
        contrast=contrast,
        choices=choices,
    )
    return SyntheticBands(
        galaxy=galaxy,
        images=bands,
        sky_sigma=sky_sigma,
        gain=_GAIN,
        psf_fwhm=choices.psf_fwhm,
        clump_yx=clump_yx,
        clump_flux=clumps.flux,
        clump_sigma=clumps.sigma,
        host_flux=host_flux,
        host_yx=(disc.cy, disc.cx),
        host_axis_ratio=disc.axis_ratio,
        host_scale_length=disc.scale_length,
    )


def _place_clumps(rng, disc: _Disc, sides, image_size):
    """float32 [N, 2]: clump centres drawn from the disc light, boxes inside and not piled up."""
    clump_yx = np.zeros((len(sides), 2), np.float32)
    for k, side in enumerate(sides):
        half = side / 2
        for _ in range(100):
            # Like an exponential disc's light (~ r exp(-r / h) per unit radius, Gamma(2, h)), but
            # wider: clumps favour the outer disc and this matches the measured box-centre spread.
            radius = rng.gamma(2.0, _CLUMP_SPREAD * disc.scale_length)
            phase = rng.uniform(0.0, 2 * math.pi)
            py, px = disc.image_position(radius * math.cos(phase), radius * math.sin(phase))
            inside = half <= py <= image_size - half and half <= px <= image_size - half
            gaps = np.hypot(clump_yx[:k, 0] - py, clump_yx[:k, 1] - px)
            apart = np.all(gaps > 0.6 * (half + sides[:k] / 2))
            if inside and apart and radius > 1.5 * disc.bulge_re:
                break
        clump_yx[k] = np.clip((py, px), half, image_size - half)
    return clump_yx


def _box_pixels(box_yxyx, image_size):
    """(rows, columns) slices of the pixels whose centres lie in the box."""
    y0, x0, y1, x1 = (float(v) for v in box_yxyx)
    rows = slice(max(0, math.ceil(y0 - 0.5)), min(image_size, math.floor(y1 - 0.5) + 1))
    columns = slice(max(0, math.ceil(x0 - 0.5)), min(image_size, math.floor(x1 - 0.5) + 1))
    return rows, columns


def _clump_snr_and_contrast(clump_flux_r, total_r, galaxy_r, boxes_yxyx, sky_sigma_r):
    """Each clump's r-band signal-to-noise ratio and contrast within its box.

    Args:
        clump_flux_r: [N] each clump's own r flux within its box.
        total_r: [H, W] noise-free r light of every source.
        galaxy_r: [H, W] noise-free r light of the disc and bulge.
        boxes_yxyx: [N, 4] the clump boxes, px.
        sky_sigma_r: the r-band sky noise per pixel.

    Returns:
        float32 [N] SNRs (the noise as the image's: sky plus Poisson of all the light) and
        float32 [N] contrasts (clump over disc and bulge light).
    """
    snr, contrast = [], []
    for flux, box in zip(clump_flux_r, boxes_yxyx):
        pixels = _box_pixels(box, total_r.shape[0])
        n_pixels = total_r[pixels].size
        variance = n_pixels * sky_sigma_r**2 + float(np.maximum(total_r[pixels], 0.0).sum()) / _GAIN
        snr.append(flux / math.sqrt(variance))
        contrast.append(flux / float(galaxy_r[pixels].sum()))
    return np.array(snr, np.float32), np.array(contrast, np.float32)


@dataclasses.dataclass(frozen=True)
class _Clumps:
    """What `_add_clumps` put in: r flux within each box [N], total flux [N, 5], sigmas [N, 2] px."""

    flux_in_box_r: np.ndarray
    flux: np.ndarray
    sigma: np.ndarray


def _add_clumps(rng, bands, disc: _Disc, clump_yx, boxes_yxyx, light_side, labels, psf, choices) -> _Clumps:
    """Adds PSF-blurred clumps; their peak is a random multiple of the local disc plus sky noise.

    Resolved clumps' sizes are fractions of `light_side` (the galaxy's side under the "light"
    rule) in the galaxy's clump profile; normal clumps are point-like with probability
    1 - `choices.resolved_fraction`. Odd clumps are always resolved: their shape marks them.
    """
    image_size = bands.shape[-1]
    flux_in_box = np.zeros(len(labels))
    total_flux = np.zeros((len(labels), len(BAND_NAMES)))
    sigma = np.zeros((len(labels), 2), np.float32)
    low, high = _CLUMP_CONTRAST_RANGE
    profile = _EXPONENTIAL if choices.clump_profile == "exponential" else _GAUSSIAN
    for k, ((py, px), box, odd) in enumerate(zip(clump_yx, boxes_yxyx, labels)):
        pixels = _box_pixels(box, image_size)
        before = float(bands[_R][pixels].sum())
        contrast = 10 ** rng.uniform(math.log10(low), math.log10(high))
        # In reference sky sigmas: a noisier galaxy's clumps are harder to see.
        peak = contrast * (float(disc.surface_brightness(py, px)) + 3.0 * float(_SKY_SIGMA[_R]))
        source = profile
        if odd:
            ugriz = _host_ugriz(rng.normal(1.0, 0.12), rng.normal(0.45, 0.06), choices)
            if rng.random() < 0.5:  # elongated
                sigma_major = light_side * rng.uniform(0.12, 0.2)
                sigma_minor = sigma_major * rng.uniform(0.25, 0.5)
            else:  # diffuse
                sigma_major = light_side * rng.uniform(0.18, 0.28)
                sigma_minor = sigma_major * rng.uniform(0.7, 1.0)
                peak *= 0.5
        else:
            ugriz = _host_ugriz(rng.normal(0.1, 0.1), rng.normal(-0.05, 0.08), choices)
            if rng.random() < choices.resolved_fraction:
                sigma_major = light_side * rng.uniform(0.06, 0.12)
                sigma_minor = sigma_major * rng.uniform(0.7, 1.0)
            else:
                source, sigma_major, sigma_minor = _POINT, 0.0, 0.0
        flux = peak / _blurred_peak(psf, source, sigma_major, sigma_minor)
        angle = rng.uniform(0.0, math.pi)
        _add_blurred(bands, psf, source, py, px, sigma_major, sigma_minor, angle, flux * ugriz)
        flux_in_box[k] = float(bands[_R][pixels].sum()) - before
        total_flux[k] = flux * ugriz  # the mixtures' weights sum to 1: all of it
        sigma[k] = sigma_major, sigma_minor
    return _Clumps(flux_in_box_r=flux_in_box, flux=total_flux, sigma=sigma)


def _distance_to_boxes(py, px, boxes_yxyx):
    """Euclidean distance from each (py, px) (scalars or [K]) to the nearest box (0 inside one).

    inf without boxes.
    """
    py, px = np.asarray(py)[..., None], np.asarray(px)[..., None]
    dy = np.maximum(np.maximum(boxes_yxyx[:, 0] - py, py - boxes_yxyx[:, 2]), 0.0)
    dx = np.maximum(np.maximum(boxes_yxyx[:, 1] - px, px - boxes_yxyx[:, 3]), 0.0)
    return np.min(np.hypot(dy, dx), axis=-1, initial=np.inf)


def _add_stars(rng, bands, boxes_yxyx, psf: _Mixture, psf_fwhm: float):
    """Adds foreground stars outside every box; returns their centres as [(y, x), ...]."""
    image_size = bands.shape[-1]
    psf_peak = _blurred_peak(psf, _POINT, 0.0, 0.0)
    centres = []
    for _ in range(rng.poisson(_STARS_PER_IMAGE)):
        peak = 10 ** rng.uniform(math.log10(10.0), math.log10(3000.0))  # in r-band sky sigmas
        # Bright stars bloom under the asinh stretch, so they keep further from the clumps.
        margin = psf_fwhm * (1 + math.log10(peak))
        for _ in range(20):
            py, px = rng.uniform(0.0, image_size, size=2)
            if _distance_to_boxes(py, px, boxes_yxyx) > margin:
                g_minus_r = rng.uniform(0.3, 1.5)
                ugriz = _colour_to_ugriz(g_minus_r, 0.05 + 0.35 * g_minus_r)  # along the stellar locus
                flux = peak * float(_SKY_SIGMA[_R]) / psf_peak
                _add_blurred(bands, psf, _POINT, py, px, 0.0, 0.0, 0.0, flux * ugriz)
                centres.append((py, px))
                break
    return centres


def _add_field_galaxies(rng, bands, boxes_yxyx, psf: _Mixture, psf_fwhm: float):
    """Adds field galaxies behind and beside the disc, away from the boxes; returns their centres.

    Peaks follow N(> peak) ~ 1 / peak (faint ones common); brighter ones are larger. A third are
    compact red spheroids, the rest bluer, flatter discs; each is a Gaussian (Sersic n=0.5)
    blurred by the PSF, as the unresolved-to-barely-resolved galaxies of an SDSS field look.
    """
    image_size = bands.shape[-1]
    scale = image_size / REFERENCE_IMAGE_SIZE
    low, high = _FIELD_PEAK_RANGE
    centres = []
    for _ in range(rng.poisson(_FIELD_GALAXIES_PER_IMAGE)):
        peak = low / (1 - rng.random() * (1 - low / high))  # truncated Pareto, index 1
        sigma_major = rng.uniform(1.0, 2.5) * scale * (peak / low) ** 0.3
        if rng.random() < 0.35:
            sigma_major *= 0.7
            sigma_minor = sigma_major * rng.uniform(0.6, 1.0)
            ugriz = _colour_to_ugriz(rng.normal(1.1, 0.15), rng.normal(0.45, 0.08))
        else:
            sigma_minor = sigma_major * rng.uniform(0.25, 1.0)
            ugriz = _colour_to_ugriz(rng.normal(0.6, 0.2), rng.normal(0.3, 0.1))
        margin = 3 * sigma_major + 1.6 * psf_fwhm
        for _ in range(20):
            py, px = rng.uniform(0.0, image_size, size=2)
            if _distance_to_boxes(py, px, boxes_yxyx) > margin:
                break
        else:
            continue
        flux = peak * float(_SKY_SIGMA[_R]) * 2 * math.pi * sigma_major * sigma_minor
        _add_blurred(bands, psf, _GAUSSIAN, py, px, sigma_major, sigma_minor, rng.uniform(0.0, math.pi), flux * ugriz)
        centres.append((py, px))
    return centres


@dataclasses.dataclass(frozen=True)
class _Arms:
    """A two-armed logarithmic spiral: relative amplitude, pitch angle (radians) and phase."""

    amplitude: float
    pitch: float
    phase: float


def _add_hii_regions(rng, bands, disc: _Disc, arms: _Arms, disc_light, boxes_yxyx, psf: _Mixture, choices):
    """Adds unresolved HII regions on the arm crests, outside the boxes; returns their centres.

    Their number grows with the arms' strength; each peaks, after the PSF, at a small fraction
    of the local unblurred arm light, and none falls within 0.8 PSF FWHM of a box. Being
    unresolved, each is one PSF stamp centred on a pixel, which keeps many knots cheap.

    Args:
        bands: float32 [5, H, W] u, g, r, i, z light, added to in place.
        disc_light: [H, W] the disc's r light with its arms, before the PSF blur.

    Returns:
        float32 [K, 2] centres (y, x).
    """
    image_size = bands.shape[-1]
    count = rng.poisson(_HII_REGIONS_PER_ARM_AMPLITUDE * arms.amplitude)
    # Along the disc light (Gamma(2) in scale lengths), on one of the two crests, where the
    # winding in `_Disc.spiral_arms` is a multiple of 2 pi; a little scatter across the arm.
    radius = rng.gamma(2.0, 1.0, size=count) + 0.2
    crest = rng.integers(0, 2, size=count)
    theta = np.log(radius) / math.tan(arms.pitch) - arms.phase / 2 + math.pi * crest + rng.normal(0.0, 0.1, count)
    radius *= disc.scale_length
    py, px = disc.image_position(radius * np.cos(theta), radius * np.sin(theta))
    contrast = 10 ** rng.uniform(*np.log10(_HII_CONTRAST_RANGE), size=count)  # faint ones common
    ugriz = _host_ugriz(rng.normal(0.1, 0.1), rng.normal(-0.05, 0.08), choices)  # as blue as young clumps

    rows, columns = np.floor(py).astype(int), np.floor(px).astype(int)
    inside = (rows >= 0) & (rows < image_size) & (columns >= 0) & (columns < image_size)
    rows, columns, contrast = rows[inside], columns[inside], contrast[inside]
    centres_yx = np.stack([rows, columns], axis=1).astype(np.float32) + 0.5
    margin = 0.8 * choices.psf_fwhm
    clear = _distance_to_boxes(centres_yx[:, 0], centres_yx[:, 1], boxes_yxyx) > margin
    if not clear.any():
        return np.zeros((0, 2), np.float32)
    stamp = _psf_stamp(psf)
    half = len(stamp) // 2
    peaks = contrast[clear] * disc_light[rows[clear], columns[clear]]
    for row, column, peak in zip(rows[clear], columns[clear], peaks):
        y0, x0 = max(0, row - half), max(0, column - half)
        y1, x1 = min(image_size, row + half + 1), min(image_size, column + half + 1)
        cut = stamp[y0 - row + half : y1 - row + half, x0 - column + half : x1 - column + half]
        bands[:, y0:y1, x0:x1] += ugriz[:, None, None] * (peak * cut)
    return centres_yx[clear]


def _psf_stamp(psf: _Mixture):
    """float32 [2R + 1, 2R + 1]: the PSF at integer offsets, scaled to peak 1.

    R is three sigmas of its widest Gaussian, which holds all but ~1% of the light.
    """
    radius = math.ceil(3 * math.sqrt(psf.variances.max()))
    offsets_sq = np.arange(-radius, radius + 1, dtype=np.float32) ** 2
    distance_sq = offsets_sq[:, None] + offsets_sq[None, :]
    stamp = sum(w / var * np.exp(-0.5 * distance_sq / var) for w, var in zip(*psf))
    return (stamp / stamp[radius, radius]).astype(np.float32)
