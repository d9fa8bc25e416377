"""Artificial clumps for the selection function: where they go, how bright, and their light in each band.

Model-free (numpy, scipy, photutils; no TensorFlow), like `host` and `photometry`:
`gsfc_tf.completeness` composes these steps with a detector.

    1. `draw_positions`: centres drawn from the host's own light inside its segment, each
       clump's box (`truth_boxes`: `conventions.BOX_SIDE_PER_PSF_FWHM` PSF FWHMs on a side)
       inside the detector's view and overlapping no other box, injected or detected, so
       injected clumps blend neither with each other nor with what is already found.
    2. `clump_fluxes`: the flag band's flux from the clump/host flux ratio, the other bands'
       from colours drawn uniformly in given ranges (`DEFAULT_COLOUR_RANGES`).
    3. `inject_clumps`: each clump is a PSF profile (`gaussian_psf` of the band's FWHM by
       default; `moffat_psf`, or any `PsfProfile`), widened by a Gaussian of its intrinsic
       size for resolved clumps, scaled to its flux, with its Poisson noise where the gain is
       known.
    4. `aperture_snr`: its signal-to-noise ratio in the catalogue's aperture.

Flux ratio: a clump injected at ratio f has flux f / (1 - f) x the host's (measured before
injection) in the flag band, so that its flux over the host's with it added, which is what the
catalogue's `flux_ratio_b` measures of a real clump (`photometry`), is f.

Frames: `draw_positions` and `truth_boxes` work in image coordinates (top row first, origin at
the top-left corner, the frame of boxes and detections); `inject_clumps` and `aperture_snr` in
the arrays as stored (FITS: bottom row first; astropy's pixel coordinates);
`conventions.image_to_fits_pixels` maps one to the other.

Shape shorthand: H x W images, N clumps, B bands, K boxes to avoid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from photutils.aperture import CircularAperture, aperture_photometry
from scipy import ndimage

from gsfc_tf import conventions
from gsfc_tf.photometry import APERTURE_FWHM, clump_light_fraction

__all__ = [
    "DEFAULT_COLOUR_RANGES",
    "PsfProfile",
    "aperture_snr",
    "clump_fluxes",
    "draw_positions",
    "gaussian_psf",
    "inject_clumps",
    "moffat_psf",
    "truth_boxes",
]

# A PSF's surface brightness (any scale) at squared distances [...] px^2 from its centre, for a FWHM in px.
PsfProfile = Callable[[np.ndarray, float], np.ndarray]

# AB colours of young star-forming clumps, uniform in each range: the synthetic generator's
# normal clumps within about 2 sigma (g - r ~ N(0.1, 0.1), r - i ~ N(-0.05, 0.08), u - g =
# 0.2 + 2 (g - r), i - z = 0.6 (r - i)), which are the blue clumps of Clump Scout galaxies.
DEFAULT_COLOUR_RANGES = {"u-g": (0.0, 0.8), "g-r": (-0.1, 0.3), "r-i": (-0.2, 0.1), "i-z": (-0.15, 0.1)}
_FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))
# A clump's stamp reaches this many PSF FWHMs (plus 4 intrinsic sigmas) from its centre; the light
# beyond (1 % of a Moffat beta = 2.5's) is put inside, so every clump has exactly its flux.
_STAMP_RADIUS_FWHM = 4.0
# Candidate positions drawn per clump wanted; those whose boxes overlap are dropped.
_CANDIDATES_PER_CLUMP = 30


def gaussian_psf(radius_sq, fwhm_px: float) -> np.ndarray:
    """A circular Gaussian PSF of FWHM `fwhm_px`: exp(-r^2 / (2 sigma^2)), sigma = FWHM / 2.3548."""
    sigma = fwhm_px / _FWHM_PER_SIGMA
    return np.exp(-0.5 * np.asarray(radius_sq) / sigma**2)


def moffat_psf(beta: float) -> PsfProfile:
    """A circular Moffat PSF (1 + r^2 / alpha^2)^-beta with alpha set by the FWHM; beta > 1.

    Ground-based seeing has Moffat wings, beta about 2.5-4.5 (the generator family's held-out PSFs).
    """
    if not beta > 1:
        raise ValueError(f"beta must be > 1 (a Moffat profile with finite flux), got {beta!r}")

    def psf(radius_sq, fwhm_px: float) -> np.ndarray:
        alpha_sq = (fwhm_px / (2 * math.sqrt(2 ** (1 / beta) - 1))) ** 2
        return (1 + np.asarray(radius_sq) / alpha_sq) ** -beta

    psf.__name__ = f"moffat_psf(beta={beta:g})"
    return psf


def truth_boxes(centres_xy, fwhm_px: float) -> np.ndarray:
    """float64 [N, 4] yxyx boxes of point-like clumps at [N, 2] (x, y) centres, image px.

    Side `conventions.BOX_SIDE_PER_PSF_FWHM` x `fwhm_px`. The rule holds in any frame whose pixels
    measure the FWHM too: the detector shrinks an image to its view, clump and box alike.
    """
    centres = np.asarray(centres_xy, np.float64).reshape(-1, 2)
    half = conventions.BOX_SIDE_PER_PSF_FWHM * fwhm_px / 2
    return np.concatenate([centres[:, ::-1] - half, centres[:, ::-1] + half], axis=1)


def draw_positions(
    light,
    mask,
    n: int,
    *,
    fwhm_px: float,
    window_yxyx: Sequence[float],
    avoid_yxyx,
    rng: np.random.Generator,
) -> np.ndarray:
    """Up to `n` clump centres drawn from `light` on `mask`, their boxes apart from each other and from `avoid_yxyx`.

    A pixel is drawn with probability proportional to its light (negative light counts 0), the
    centre placed uniformly within it; a candidate is kept when its box (`truth_boxes`) lies
    inside `window_yxyx` and overlaps neither `avoid_yxyx` nor a box kept before it.

    Args:
        light: [H, W] the host's light (e.g. the band sum), image frame (top row first).
        mask: bool [H, W] the host's segment, same frame.
        n: clumps wanted (>= 0).
        fwhm_px: the PSF FWHM that sets the boxes' side, px.
        window_yxyx: [4] the part of the image the detector sees (`conventions.detector_window`).
        avoid_yxyx: [K, 4] boxes to keep clear of (the detections already there).
        rng: the random stream.

    Returns:
        float64 [M, 2] (x, y) centres, image px, M <= n: fewer where the segment has no room.
    """
    light = np.where(np.asarray(mask, bool), np.clip(np.asarray(light, np.float64), 0.0, None), 0.0)
    light = np.nan_to_num(light, nan=0.0, posinf=0.0)
    half = conventions.BOX_SIDE_PER_PSF_FWHM * fwhm_px / 2
    y0, x0, y1, x1 = window_yxyx
    # Pixels whose every point leaves the box inside the window.
    rows, columns = np.arange(light.shape[0]), np.arange(light.shape[1])
    light[(rows < y0 + half) | (rows + 1 > y1 - half), :] = 0.0
    light[:, (columns < x0 + half) | (columns + 1 > x1 - half)] = 0.0
    total = light.sum()
    if n <= 0 or total <= 0:
        return np.zeros((0, 2))
    pixels = rng.choice(light.size, size=n * _CANDIDATES_PER_CLUMP, p=(light / total).ravel())
    row, column = np.divmod(pixels, light.shape[1])
    candidates = np.stack([column, row], axis=1) + rng.uniform(0.0, 1.0, (len(pixels), 2))
    taken = np.asarray(avoid_yxyx, np.float64).reshape(-1, 4)
    kept = []
    for centre, box in zip(candidates, truth_boxes(candidates, fwhm_px)):
        if len(kept) == n:
            break
        if not (conventions.pairwise_iou(box, taken) > 0).any():
            kept.append(centre)
            taken = np.concatenate([taken, box[None]])
    return np.array(kept, np.float64).reshape(-1, 2)


def clump_fluxes(
    flux_ratio: float,
    host_flux: float,
    *,
    bands: Sequence[str],
    flag_band: str,
    zero_points: Mapping[str, float],
    n: int,
    colour_ranges: Mapping[str, tuple[float, float]] = DEFAULT_COLOUR_RANGES,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Fluxes of `n` clumps at one clump/host flux ratio, per band, in the images' units.

    Args:
        flux_ratio: in (0, 1), in the flag band (module docstring).
        host_flux: the host's flux in the flag band, before injection (> 0).
        bands: the band names in wavelength order (bluest first).
        flag_band: the band of the ratio, one of `bands`.
        zero_points: band -> AB magnitude of one unit of the images.
        n: number of clumps.
        colour_ranges: "a-b" -> (low, high) AB colour for each adjacent pair of `bands`; each
            clump draws each colour uniformly.
        rng: the random stream.

    Returns:
        band -> float64 [n] fluxes.

    Raises:
        ValueError: a ratio outside (0, 1), a host without positive flux, an unknown flag band,
            or an adjacent pair of bands without a colour range.
    """
    if not 0 < flux_ratio < 1:
        raise ValueError(f"flux ratios must be in (0, 1), got {flux_ratio!r}")
    if not host_flux > 0:
        raise ValueError(f"the host's {flag_band} flux must be > 0, got {host_flux!r}")
    if flag_band not in bands:
        raise ValueError(f"flag band {flag_band!r} is not one of the bands {', '.join(bands)}")
    pairs = [f"{bluer}-{redder}" for bluer, redder in zip(bands, bands[1:])]
    missing = [pair for pair in pairs if pair not in colour_ranges]
    if missing:
        raise ValueError(f"no colour range for {', '.join(missing)}: give one (colour_ranges)")
    colours = np.stack([rng.uniform(*colour_ranges[pair], size=n) for pair in pairs], axis=1)
    # AB magnitudes relative to the flag band's: each redder band is brighter by the colour.
    magnitudes = np.concatenate([np.zeros((n, 1)), -np.cumsum(colours, axis=1)], axis=1)
    magnitudes -= magnitudes[:, [list(bands).index(flag_band)]]
    flag_flux = flux_ratio / (1 - flux_ratio) * host_flux
    return {
        band: flag_flux * 10 ** (-0.4 * (magnitudes[:, k] - zero_points[band] + zero_points[flag_band]))
        for k, band in enumerate(bands)
    }


def _stamp(x: float, y: float, shape, *, fwhm_px: float, size_px: float, psf: PsfProfile):
    """(row slice, column slice, [h, w] weights) of one clump's light of unit flux on an [H, W] array."""
    radius = math.ceil(_STAMP_RADIUS_FWHM * fwhm_px + 4 * size_px)
    row0, column0 = round(y), round(x)
    rows = np.arange(row0 - radius, row0 + radius + 1)
    columns = np.arange(column0 - radius, column0 + radius + 1)
    weights = psf((rows[:, None] - y) ** 2 + (columns[None, :] - x) ** 2, fwhm_px)
    if size_px > 0:  # a resolved clump: its Gaussian light seen through the PSF
        weights = ndimage.gaussian_filter(weights, size_px, mode="constant")
    weights = weights / weights.sum()
    # Light that would fall off the image is lost, as a real clump's at the edge would be.
    inside_rows = (rows >= 0) & (rows < shape[0])
    inside_columns = (columns >= 0) & (columns < shape[1])
    rows, columns = rows[inside_rows], columns[inside_columns]
    return slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1), weights[inside_rows][:, inside_columns]


def inject_clumps(
    images: Mapping[str, np.ndarray],
    centres_xy,
    fluxes: Mapping[str, np.ndarray],
    *,
    fwhm_px: Mapping[str, float],
    sizes_px=None,
    psf: PsfProfile = gaussian_psf,
    gains: Mapping[str, float] | None = None,
    noise_rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """Band images with clumps added (copies; the inputs are left alone).

    Args:
        images: band -> [H, W] images as stored (FITS frame), one shape.
        centres_xy: [N, 2] (x, y) clump centres, astropy pixel coordinates of the arrays.
        fluxes: band -> [N] each clump's total flux, the images' units; every band of `images`.
        fwhm_px: band -> the PSF FWHM, px.
        sizes_px: [N] intrinsic Gaussian sigma of each clump, px; None or 0 for point sources.
        psf: the PSF profile (`gaussian_psf`, `moffat_psf(beta)` or any `PsfProfile`).
        gains: band -> Poisson counts per unit flux (inf: no noise); None for none.
        noise_rng: the clumps' Poisson noise is drawn from it (Gaussian of variance flux / gain
            per pixel) where the gain is finite; None adds no noise.

    Returns:
        band -> float32 [H, W] images with the clumps.

    Raises:
        ValueError: a centre outside the image, or a band without fluxes.
    """
    shapes = {np.shape(image) for image in images.values()}
    if len(shapes) != 1:
        raise ValueError(f"band images must share one shape, got {sorted(shapes)}")
    height, width = shapes.pop()
    centres = np.asarray(centres_xy, np.float64).reshape(-1, 2)
    sizes = np.zeros(len(centres)) if sizes_px is None else np.broadcast_to(np.asarray(sizes_px, np.float64), len(centres))
    for k, (x, y) in enumerate(centres):
        # Pixel k spans [k - 0.5, k + 0.5) in astropy's pixel coordinates.
        if not (-0.5 <= x < width - 0.5 and -0.5 <= y < height - 0.5):
            raise ValueError(
                f"clump {k} at (x, y) = ({x:.1f}, {y:.1f}) px lies outside the {width}x{height} image; "
                "centres are 0-based pixel coordinates of the stored arrays"
            )
    missing = [band for band in images if band not in fluxes]
    if missing:
        raise ValueError(f"no clump fluxes for band(s) {', '.join(missing)}")
    injected = {}
    for band, image in images.items():
        light = np.zeros((height, width))
        for (x, y), size, flux in zip(centres, sizes, np.asarray(fluxes[band], np.float64).reshape(-1)):
            rows, columns, weights = _stamp(x, y, (height, width), fwhm_px=fwhm_px[band], size_px=size, psf=psf)
            light[rows, columns] += flux * weights
        gain = math.inf if gains is None else gains.get(band, math.inf)
        if noise_rng is not None and math.isfinite(gain):
            light += noise_rng.standard_normal(light.shape) * np.sqrt(np.clip(light, 0.0, None) / gain)
        injected[band] = (image + light).astype(np.float32)
    return injected


def aperture_snr(image, centres_xy, fluxes, *, fwhm_px: float, noise: float, gain: float, sizes_px=0.0) -> np.ndarray:
    """Signal-to-noise ratio of clumps in the catalogue's aperture (`photometry.APERTURE_FWHM` FWHMs).

    Signal: the part of each clump's flux its aperture holds (`photometry.clump_light_fraction`).
    Noise: the sky's over the aperture's pixels and the Poisson noise of all the light in it
    (host and clump, from `image`) where the gain is finite.

    Args:
        image: [H, W] the band with the clumps, as stored.
        centres_xy: [N, 2] (x, y) astropy pixel coordinates.
        fluxes: [N] the clumps' fluxes.
        fwhm_px: the band's PSF FWHM, px.
        noise: the sky noise per pixel (`host.pixel_noise`).
        gain: Poisson counts per unit flux (inf: sky noise only).
        sizes_px: [N] or one intrinsic Gaussian sigma, px.

    Returns:
        float64 [N].
    """
    centres = np.asarray(centres_xy, np.float64).reshape(-1, 2)
    if not len(centres):
        return np.zeros(0)
    aperture = CircularAperture(centres, r=APERTURE_FWHM * fwhm_px)
    light = np.asarray(aperture_photometry(np.asarray(image, np.float64), aperture)["aperture_sum"], np.float64)
    variance = aperture.area * noise**2 + np.clip(light, 0.0, None) / gain
    signal = np.asarray(fluxes, np.float64) * clump_light_fraction(aperture.r, fwhm_px, size_px=sizes_px)
    return signal / np.sqrt(variance)
