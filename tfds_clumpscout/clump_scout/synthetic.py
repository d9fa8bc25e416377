"""Seeded synthetic clumpy galaxies that look like Galaxy Zoo: Clump Scout SDSS gri crops.

Each galaxy is an inclined exponential disc (Sersic n=1) plus a de Vaucouleurs bulge (n=4), with
blue star-forming clumps sampled from the disc light, PSF-blurred, seen through sky and Poisson
noise and mapped to an SDSS-like gri colour composite (i -> R, r -> G, g -> B) with the Lupton et
al. (2004) asinh stretch of FITS cutouts (`gsfc_tf.images.gri_composite`). Unlabelled sources that a detector must learn to pass over never get a
box: foreground stars; field galaxies behind and beside the disc (Euclidean-like number counts,
blue discs to red spheroids); and, along the spiral arms, HII regions: many small, faint,
unresolved knots that are not giant clumps.

Every labelled clump gets a square box centred on it, sized like the volunteers' consensus boxes:
one side for all of a galaxy's boxes, drawn from their side distribution.
"Odd" clumps (label 1) are red (bulge-like colours, as volunteers flagged red or unusual clumps)
and either elongated (axis ratio 0.25-0.5) or diffuse (2-3x wider, lower surface brightness),
so a detector can tell them apart by colour and shape.

Each clump's signal-to-noise ratio and contrast are recorded (`SyntheticGalaxy.snr`, `.contrast`),
measured in the r band within its box, so evaluation can tell faint misses from bright ones.

`generate_bands` gives the same galaxies' linear u, g, r, i, z light with every clump's and the
host's true flux per band (`SyntheticBands`), the truth for photometry; u and z add no draw to a
galaxy's random stream, so its composite, boxes and the `clump_scout/synthetic` data are unchanged.

The box and count statistics below are those of the Galaxy Zoo: Clump Scout consensus boxes used by
Popp et al. 2024 (RASTI 3(1):174), measured in the central 200x200 crop from the authors'
`imageGroups_{train,valid}.pkl`. Lengths are in pixels of a 200-pixel crop and scale with
`image_size`.

Shape shorthand: H = W = image_size, N clumps (1..9), M stars and field galaxies, K HII regions.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from collections.abc import Iterator

import numpy as np

from gsfc_tf.images import gri_composite

__all__ = [
    "BOX_CENTRE_MEAN_PX",
    "BOX_CENTRE_STD_PX",
    "BOX_SIDE_MEDIAN_PX",
    "BOX_SIDE_P05_PX",
    "BOX_SIDE_P95_PX",
    "BOX_SIDE_RANGE_PX",
    "CLUMP_COUNT_HISTOGRAM",
    "NANOMAGGIES_PER_UNIT",
    "ODD_FRACTION",
    "REFERENCE_IMAGE_SIZE",
    "SyntheticGalaxy",
    "generate_galaxies",
    "generate_galaxy",
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

BAND_NAMES = ("u", "g", "r", "i", "z")  # the order of every per-band array here
_GRI = slice(1, 4)  # g, r, i: the bands of the composite, drawn from the galaxy's main stream
_UZ = [BAND_NAMES.index("u"), BAND_NAMES.index("z")]  # drawn from a stream of their own
_R = BAND_NAMES.index("r")
# Per-band sky noise in r-band sky sigmas; as in SDSS, g and i are noisier than r, u and z more so.
_SKY_SIGMA = np.array([1.6, 1.1, 1.0, 1.4, 3.5], np.float32)
_GAIN = 4.0  # source counts per flux unit: Poisson variance is flux / _GAIN
# The generator's flux unit (r-band sky noise 1 per pixel) in nanomaggies: puts the r-band sky noise
# near that of SDSS frames (a few hundredths of a nanomaggy per pixel).
NANOMAGGIES_PER_UNIT = 0.026
_BULGE_B4 = 7.669  # Sersic b_n for n = 4 (half light inside R_e)
_PSF_WEIGHTS = (0.9, 0.1)  # double-Gaussian PSF as SDSS models it: a core and a 2x wider wing
_PSF_WING_SCALE = 2.0
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
class SyntheticGalaxy:
    """One synthetic galaxy crop with its clump boxes.

    Attributes:
        image: uint8 [H, W, 3] gri composite (R = i, G = r, B = g).
        boxes_yxyx: float32 [N, 4] square clump boxes, absolute pixels (y0, x0, y1, x1), inside the
            image.
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


@dataclasses.dataclass(frozen=True)
class SyntheticBands:
    """One synthetic galaxy's linear u, g, r, i, z light and the true fluxes behind it.

    Fluxes are in the generator's unit, in which the r-band sky noise is 1 per pixel. A clump's
    flux is its whole PSF-blurred light (over the plane, also what falls off the image). The host
    is the galaxy's own light: disc, bulge, HII regions and clumps, not the foreground stars and
    field galaxies; its flux is that light's noise-free sum over the image, which is all a
    measurement on the crop can recover.

    Attributes:
        galaxy: the `SyntheticGalaxy` (composite, boxes, labels...), the same as `generate_galaxy`
            and `generate_galaxies` give for the same seed.
        images: float32 [5, H, W] u, g, r, i, z (`BAND_NAMES`) with sky and Poisson noise, top row
            first like `galaxy.image`; g, r, i are the planes of the composite.
        sky_sigma: float32 [5] per-band sky noise per pixel.
        gain: Poisson counts per flux unit (variance of a pixel = sky_sigma**2 + light / gain).
        psf_fwhm: full width at half maximum of the double-Gaussian PSF, px (every band).
        clump_yx: float32 [N, 2] true clump centres (y, x), px, in the image frame (the box centres).
        clump_flux: float64 [N, 5] each clump's total flux per band.
        clump_sigma: float32 [N, 2] each clump's intrinsic Gaussian sigmas (major, minor), px,
            before the PSF.
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


def generate_galaxy(seed: int, *, image_size: int = REFERENCE_IMAGE_SIZE) -> SyntheticGalaxy:
    """Draws one galaxy, the same for the same `seed` and `image_size`.

    Args:
        seed: non-negative integer seed.
        image_size: side H = W of the square image in pixels (>= 32); all lengths scale with it.

    Returns:
        A `SyntheticGalaxy` with a [H, W, 3] uint8 image and N in 1..9 boxes.
    """
    _check_integer("seed", seed, minimum=0)
    _check_integer("image_size", image_size, minimum=_MIN_IMAGE_SIZE)
    return _draw(np.random.default_rng(seed), image_size).galaxy


def generate_galaxies(
    n: int, *, seed: int, image_size: int = REFERENCE_IMAGE_SIZE
) -> Iterator[SyntheticGalaxy]:
    """Lazily draws `n` independent galaxies; galaxy k depends on (seed, k) only, not on `n`.

    Args:
        n: number of galaxies (>= 0).
        seed: non-negative integer seed.
        image_size: side H = W of the square images in pixels (>= 32).

    Returns:
        An iterator of `SyntheticGalaxy` objects, as in `generate_galaxy`.
    """
    return (bands.galaxy for bands in generate_bands(n, seed=seed, image_size=image_size))


def generate_bands(n: int, *, seed: int, image_size: int = REFERENCE_IMAGE_SIZE) -> Iterator[SyntheticBands]:
    """Lazily draws the u, g, r, i, z light and true fluxes of the galaxies of `generate_galaxies`.

    Galaxy k's `.galaxy` is exactly `generate_galaxies(n, seed=seed, image_size=image_size)`'s
    k-th: u and z add no draw to the galaxy's random stream (their colours follow from g - r
    and r - i, their noise comes from a stream spawned from the galaxy's seed).

    Args:
        n: number of galaxies (>= 0).
        seed: non-negative integer seed.
        image_size: side H = W of the square images in pixels (>= 32).

    Returns:
        An iterator of `SyntheticBands` objects.
    """
    _check_integer("n", n, minimum=0)
    _check_integer("seed", seed, minimum=0)
    _check_integer("image_size", image_size, minimum=_MIN_IMAGE_SIZE)
    # Child k of a SeedSequence is fixed by its spawn key (k,), whatever the number spawned.
    children = np.random.SeedSequence(seed).spawn(n)
    # Arguments are checked above, at the call, rather than at the first `next`.
    return (_draw(np.random.default_rng(child), image_size) for child in children)


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
    random draw and the g, r, i light is the same as before u and z were added.
    """
    g, i = 10 ** (-0.4 * g_minus_r), 10 ** (0.4 * r_minus_i)
    u_minus_g = _U_MINUS_G_AT_ZERO + _U_MINUS_G_PER_G_MINUS_R * g_minus_r
    i_minus_z = _I_MINUS_Z_PER_R_MINUS_I * r_minus_i
    return np.array([g * 10 ** (-0.4 * u_minus_g), g, 1.0, i, i * 10 ** (0.4 * i_minus_z)], np.float32)


def _fwhm_per_core_sigma() -> float:
    """The double-Gaussian PSF's full width at half maximum in core sigmas (about 2.42, not 2.35)."""

    def profile(radius):
        return sum(
            weight / scale**2 * math.exp(-0.5 * (radius / scale) ** 2)
            for weight, scale in zip(_PSF_WEIGHTS, (1.0, _PSF_WING_SCALE))
        )

    low, high = 0.0, 10.0
    for _ in range(60):  # bisection down to double precision
        middle = (low + high) / 2
        low, high = (middle, high) if profile(middle) > profile(0.0) / 2 else (low, middle)
    return 2 * low


_FWHM_PER_CORE_SIGMA = _fwhm_per_core_sigma()


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


def _blur(profiles, psf_vars):
    """Convolves each [H, W] profile with the double-Gaussian PSF; no light comes from off-frame.

    numpy's FFT is single-threaded, which keeps this fast when several processes share the CPU
    (multi-threaded BLAS products were 5-10x slower there). Zero padding by 5 wing sigmas stops
    light wrapping round the edges.
    """
    size = profiles[0].shape[0]
    padded = _fast_fft_size(size + math.ceil(5 * math.sqrt(psf_vars[-1])))
    frequency_sq = np.fft.fftfreq(padded)[:, None] ** 2 + np.fft.rfftfreq(padded)[None, :] ** 2
    transfer = sum(
        weight * np.exp(-2 * math.pi**2 * var * frequency_sq)
        for weight, var in zip(_PSF_WEIGHTS, psf_vars)
    )
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


def _add_blurred_gaussian(bands, psf_vars, cy, cx, var_major, var_minor, angle, flux_ugriz):
    """Adds a Gaussian blurred by the double-Gaussian PSF: variances add, component by component."""
    for weight, var in zip(_PSF_WEIGHTS, psf_vars):
        _add_gaussian(bands, cy, cx, var_major + var, var_minor + var, angle, weight * flux_ugriz)


def _box_sides(rng, count, scale):
    """float32 [count]: one square box side for all of a galaxy's clumps, from the measured distribution.

    One side per galaxy, as in the real Clump Scout consensus labels: every one of their 14,781
    galaxies with several boxes has a single box side (../shared/data/clumpscout_labels).
    """
    z = rng.standard_normal()
    log_sigma = _LOG_SIDE_SIGMA_LOW if z < 0 else _LOG_SIDE_SIGMA_HIGH
    side = np.clip(BOX_SIDE_MEDIAN_PX * math.exp(z * log_sigma), *BOX_SIDE_RANGE_PX)
    return np.full(count, side * scale, np.float32)


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


def _galaxy_light(rng: np.random.Generator, disc: _Disc, arms: _Arms, y, x, psf_vars):
    """The disc (with its arms) and bulge in u, g, r, i, z, blurred by the PSF, before any compact source.

    Returns:
        (bands float32 [5, H, W] (`BAND_NAMES`), the unblurred disc light [H, W] that places HII regions).
    """
    disc_light = disc.surface_brightness(y, x) * disc.spiral_arms(y, x, arms.amplitude, arms.pitch, arms.phase)
    # The bulge is rounder than the disc; 0.5 px of softening keeps its n=4 cusp off one pixel.
    bulge_q = math.sqrt(disc.axis_ratio)
    bulge_radius = _elliptical_radius(disc.cy, disc.cx, bulge_q, disc.angle, y, x)
    bulge = np.exp(-_BULGE_B4 * (np.sqrt(np.sqrt(np.hypot(bulge_radius, 0.5) / disc.bulge_re)) - 1))
    disc_flux = 2 * math.pi * disc.scale_length**2 * disc.axis_ratio * disc.peak
    bulge *= rng.uniform(0.05, 0.6) * disc_flux / bulge.sum()
    blurred_disc, bulge = _blur([disc_light, bulge], psf_vars)
    disc_ugriz = _colour_to_ugriz(rng.normal(0.35, 0.06), rng.normal(0.15, 0.04))
    bulge_ugriz = _colour_to_ugriz(rng.normal(0.85, 0.05), rng.normal(0.38, 0.03))
    bands = blurred_disc[None] * disc_ugriz[:, None, None] + bulge[None] * bulge_ugriz[:, None, None]
    return bands.astype(np.float32), disc_light


def _draw(rng: np.random.Generator, image_size: int) -> SyntheticBands:
    """Draws the layout, renders the ugriz light, adds noise and maps gri to an 8-bit composite.

    Only g, r and i draw from `rng`, in the order they always have; u and z take their noise from
    a stream spawned from `rng`'s seed, which leaves `rng`'s state alone.
    """
    scale = image_size / REFERENCE_IMAGE_SIZE
    centres = _pixel_centres(image_size)
    y, x = centres[:, None], centres[None, :]

    redshift = float(rng.uniform(0.02, 0.25))
    ra = float(rng.uniform(0.0, 360.0))
    # Uniform over the sky area of the SDSS declination band.
    sin_dec = rng.uniform(math.sin(math.radians(-10.0)), math.sin(math.radians(70.0)))
    dec = float(np.degrees(np.arcsin(sin_dec)))
    disc = _draw_disc(rng, image_size, scale, redshift)
    psf_sigma = rng.uniform(2.6, 4.0) * scale / 2.3548  # FWHM of SDSS seeing, 1.0-1.6 arcsec
    psf_vars = (psf_sigma**2, (_PSF_WING_SCALE * psf_sigma) ** 2)

    count = int(rng.choice(len(CLUMP_COUNT_HISTOGRAM), p=_COUNT_PROBABILITIES)) + 1
    labels = (rng.random(count) < ODD_FRACTION).astype(np.int64)
    sides = _box_sides(rng, count, scale)
    clump_yx = _place_clumps(rng, disc, sides, image_size)
    half_sides = sides[:, None] / 2
    boxes_yxyx = np.concatenate([clump_yx - half_sides, clump_yx + half_sides], axis=1)

    arms = _Arms(
        amplitude=rng.uniform(0.0, 0.5),
        pitch=math.radians(rng.uniform(12.0, 30.0)),
        phase=rng.uniform(0.0, 2 * math.pi),
    )
    bands, disc_light = _galaxy_light(rng, disc, arms, y, x, psf_vars)
    galaxy_r = bands[_R].copy()  # the disc and bulge alone, for the clumps' contrast

    hii_regions_yx = _add_hii_regions(rng, bands, disc, arms, disc_light, boxes_yxyx, psf_vars)
    # Compact sources are added already blurred: Gaussian variances add.
    clumps = _add_clumps(rng, bands, disc, clump_yx, sides, labels, psf_vars)
    host_flux = bands.sum(axis=(1, 2), dtype=np.float64)  # before stars and field galaxies
    distractors_yx = _add_stars(rng, bands, boxes_yxyx, psf_vars)
    distractors_yx += _add_field_galaxies(rng, bands, boxes_yxyx, psf_vars)
    snr, contrast = _clump_snr_and_contrast(clumps.flux_in_box_r, bands[_R], galaxy_r, boxes_yxyx)

    noise_sigma = np.sqrt(_SKY_SIGMA[:, None, None] ** 2 + np.maximum(bands, 0.0) / _GAIN)
    noise = np.empty_like(bands)
    noise[_GRI] = rng.standard_normal(noise[_GRI].shape, dtype=np.float32)
    noise[_UZ] = rng.spawn(1)[0].standard_normal(noise[_UZ].shape, dtype=np.float32)
    bands += noise_sigma * noise
    # In nanomaggies exactly as `synthetic_fits` writes them, so a FITS reader makes this composite.
    image = gri_composite(*(bands[_GRI] * np.float32(NANOMAGGIES_PER_UNIT)))

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
    )
    return SyntheticBands(
        galaxy=galaxy,
        images=bands,
        sky_sigma=_SKY_SIGMA.copy(),
        gain=_GAIN,
        psf_fwhm=_FWHM_PER_CORE_SIGMA * psf_sigma,
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


def _clump_snr_and_contrast(clump_flux_r, total_r, galaxy_r, boxes_yxyx):
    """Each clump's r-band signal-to-noise ratio and contrast within its box.

    Args:
        clump_flux_r: [N] each clump's own r flux within its box.
        total_r: [H, W] noise-free r light of every source.
        galaxy_r: [H, W] noise-free r light of the disc and bulge.
        boxes_yxyx: [N, 4] the clump boxes, px.

    Returns:
        float32 [N] SNRs (the noise as the image's: sky plus Poisson of all the light) and
        float32 [N] contrasts (clump over disc and bulge light).
    """
    snr, contrast = [], []
    for flux, box in zip(clump_flux_r, boxes_yxyx):
        pixels = _box_pixels(box, total_r.shape[0])
        n_pixels = total_r[pixels].size
        variance = n_pixels * float(_SKY_SIGMA[_R]) ** 2 + float(np.maximum(total_r[pixels], 0.0).sum()) / _GAIN
        snr.append(flux / math.sqrt(variance))
        contrast.append(flux / float(galaxy_r[pixels].sum()))
    return np.array(snr, np.float32), np.array(contrast, np.float32)


@dataclasses.dataclass(frozen=True)
class _Clumps:
    """What `_add_clumps` put in: r flux within each box [N], total flux [N, 5], sigmas [N, 2] px."""

    flux_in_box_r: np.ndarray
    flux: np.ndarray
    sigma: np.ndarray


def _add_clumps(rng, bands, disc: _Disc, clump_yx, sides, labels, psf_vars) -> _Clumps:
    """Adds PSF-blurred clumps; their peak is a random multiple of the local disc plus sky noise."""
    image_size = bands.shape[-1]
    flux_in_box = np.zeros(len(labels))
    total_flux = np.zeros((len(labels), len(BAND_NAMES)))
    sigma = np.zeros((len(labels), 2), np.float32)
    low, high = _CLUMP_CONTRAST_RANGE
    for k, ((py, px), side, odd) in enumerate(zip(clump_yx, sides, labels)):
        half = side / 2
        pixels = _box_pixels((py - half, px - half, py + half, px + half), image_size)
        before = float(bands[_R][pixels].sum())
        contrast = 10 ** rng.uniform(math.log10(low), math.log10(high))
        peak = contrast * (float(disc.surface_brightness(py, px)) + 3.0 * float(_SKY_SIGMA[_R]))
        if odd:
            ugriz = _colour_to_ugriz(rng.normal(1.0, 0.12), rng.normal(0.45, 0.06))
            if rng.random() < 0.5:  # elongated
                sigma_major = side * rng.uniform(0.12, 0.2)
                sigma_minor = sigma_major * rng.uniform(0.25, 0.5)
            else:  # diffuse
                sigma_major = side * rng.uniform(0.18, 0.28)
                sigma_minor = sigma_major * rng.uniform(0.7, 1.0)
                peak *= 0.5
        else:
            ugriz = _colour_to_ugriz(rng.normal(0.1, 0.1), rng.normal(-0.05, 0.08))
            sigma_major = side * rng.uniform(0.06, 0.12)
            sigma_minor = sigma_major * rng.uniform(0.7, 1.0)
        var_major, var_minor = sigma_major**2, sigma_minor**2
        # Flux giving `peak` after the PSF core blur.
        flux = peak * 2 * math.pi * math.sqrt((var_major + psf_vars[0]) * (var_minor + psf_vars[0]))
        angle = rng.uniform(0.0, math.pi)
        _add_blurred_gaussian(bands, psf_vars, py, px, var_major, var_minor, angle, flux * ugriz)
        flux_in_box[k] = float(bands[_R][pixels].sum()) - before
        total_flux[k] = flux * ugriz  # the PSF's two components hold all of it
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


def _add_stars(rng, bands, boxes_yxyx, psf_vars):
    """Adds foreground stars outside every box; returns their centres as [(y, x), ...]."""
    image_size = bands.shape[-1]
    psf_peak = sum(w / (2 * math.pi * v) for w, v in zip(_PSF_WEIGHTS, psf_vars))
    centres = []
    for _ in range(rng.poisson(_STARS_PER_IMAGE)):
        peak = 10 ** rng.uniform(math.log10(10.0), math.log10(3000.0))  # in r-band sky sigmas
        # Bright stars bloom under the asinh stretch, so they keep further from the clumps.
        margin = 2.5 * math.sqrt(psf_vars[0]) * (1 + math.log10(peak))
        for _ in range(20):
            py, px = rng.uniform(0.0, image_size, size=2)
            if _distance_to_boxes(py, px, boxes_yxyx) > margin:
                g_minus_r = rng.uniform(0.3, 1.5)
                ugriz = _colour_to_ugriz(g_minus_r, 0.05 + 0.35 * g_minus_r)  # along the stellar locus
                flux = peak * float(_SKY_SIGMA[_R]) / psf_peak
                _add_blurred_gaussian(bands, psf_vars, py, px, 0.0, 0.0, 0.0, flux * ugriz)
                centres.append((py, px))
                break
    return centres


def _add_field_galaxies(rng, bands, boxes_yxyx, psf_vars):
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
        margin = 3 * sigma_major + 2 * math.sqrt(psf_vars[1])
        for _ in range(20):
            py, px = rng.uniform(0.0, image_size, size=2)
            if _distance_to_boxes(py, px, boxes_yxyx) > margin:
                break
        else:
            continue
        flux = peak * float(_SKY_SIGMA[_R]) * 2 * math.pi * sigma_major * sigma_minor
        var_major, var_minor = sigma_major**2, sigma_minor**2
        _add_blurred_gaussian(bands, psf_vars, py, px, var_major, var_minor, rng.uniform(0.0, math.pi), flux * ugriz)
        centres.append((py, px))
    return centres


@dataclasses.dataclass(frozen=True)
class _Arms:
    """A two-armed logarithmic spiral: relative amplitude, pitch angle (radians) and phase."""

    amplitude: float
    pitch: float
    phase: float


def _add_hii_regions(rng, bands, disc: _Disc, arms: _Arms, disc_light, boxes_yxyx, psf_vars):
    """Adds unresolved HII regions on the arm crests, outside the boxes; returns their centres.

    Their number grows with the arms' strength; each peaks, after the PSF, at a small fraction
    of the local unblurred arm light, and none falls within two PSF core sigmas of a box. Being
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
    ugriz = _colour_to_ugriz(rng.normal(0.1, 0.1), rng.normal(-0.05, 0.08))  # as blue as young clumps

    rows, columns = np.floor(py).astype(int), np.floor(px).astype(int)
    inside = (rows >= 0) & (rows < image_size) & (columns >= 0) & (columns < image_size)
    rows, columns, contrast = rows[inside], columns[inside], contrast[inside]
    centres_yx = np.stack([rows, columns], axis=1).astype(np.float32) + 0.5
    margin = 2 * math.sqrt(psf_vars[0])
    clear = _distance_to_boxes(centres_yx[:, 0], centres_yx[:, 1], boxes_yxyx) > margin
    if not clear.any():
        return np.zeros((0, 2), np.float32)
    stamp = _psf_stamp(psf_vars)
    half = len(stamp) // 2
    peaks = contrast[clear] * disc_light[rows[clear], columns[clear]]
    for row, column, peak in zip(rows[clear], columns[clear], peaks):
        y0, x0 = max(0, row - half), max(0, column - half)
        y1, x1 = min(image_size, row + half + 1), min(image_size, column + half + 1)
        cut = stamp[y0 - row + half : y1 - row + half, x0 - column + half : x1 - column + half]
        bands[:, y0:y1, x0:x1] += ugriz[:, None, None] * (peak * cut)
    return centres_yx[clear]


def _psf_stamp(psf_vars):
    """float32 [2R + 1, 2R + 1]: the double-Gaussian PSF at integer offsets, scaled to peak 1.

    R is three wing sigmas, which holds all but ~1% of the light.
    """
    radius = math.ceil(3 * math.sqrt(psf_vars[-1]))
    offsets_sq = np.arange(-radius, radius + 1, dtype=np.float32) ** 2
    distance_sq = offsets_sq[:, None] + offsets_sq[None, :]
    stamp = sum(w / var * np.exp(-0.5 * distance_sq / var) for w, var in zip(_PSF_WEIGHTS, psf_vars))
    return (stamp / stamp[radius, radius]).astype(np.float32)
