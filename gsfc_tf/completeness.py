"""The selection function: a detector's completeness on the user's own images, by injecting clumps.

Completeness measured on labelled splits says nothing about a user's survey. Here it is measured
on the survey itself, as Adams et al. (2022) and Guo et al. (2015) did: artificial clumps of known
flux are injected into each FITS cutout and the detector is run again to see which it recovers.

For each cutout (`measure_completeness`):
    1. Its named bands are read (`bands.read_bands`: g, r, i and the flag band required), the host
       segmented on the bands' `host.detection_image` as `predict` does (`host.segment_host` at
       the cutout's centre, its flux from `host.host_fluxes`), and the detector run on its
       picture to find the clumps already there.
    2. At every clump/host flux ratio of the grid (`InjectionSettings.flux_ratios`: by default
       8 log-spaced from 1 % to 30 % in the flag band, the bluest band unless chosen), a few
       clumps at a time (`clumps_per_image`) are injected into a copy of the bands
       (`gsfc_tf.injection`: point-like or resolved, colours drawn from ranges, at positions
       drawn from the host's light on its segment, boxes apart from each other and from the
       detections), until `clumps_per_ratio` clumps have been injected at that ratio.
    3. The picture is rebuilt exactly as `read_image` makes it (`images.fits_picture`) and the
       detector run on it, in batches, with the model's operating threshold and its one
       post-processing, as `predict` runs it.
    4. An injected clump is recovered when a detection matches it one to one
       (`evaluation.greedy_match`) at IoU >= 0.5 with its box (`injection.truth_boxes`: side
       `conventions.BOX_SIDE_PER_PSF_FWHM` x the PSF FWHM, the paper's rule) and, reported
       separately, when a detection's centre lies within 1 PSF FWHM of it (where photometry
       puts its aperture).

Everything is drawn from `InjectionSettings.seed` and the cutout's place in the input list: the
same inputs and settings give the same tables.

Outputs (`CompletenessResult`, `write_completeness`):
    injections.ecsv   one row per injected clump: galaxy_id, flux_ratio, image (which injected
                      copy of the cutout), x, y (px, image coordinates as in catalogues), size
                      (intrinsic sigma, px), flux (flag band, nmgy), snr (in `snr_band`'s
                      catalogue aperture), distance_re (from the host's centroid, host
                      half-light radii), host_axis_ratio, recovered_iou, recovered_centre.
    galaxies.ecsv     one row per cutout: galaxy_id, path, host_flag ("" when the host was
                      found; else no clumps were injected, nor where its flux is not positive),
                      n_detections (before injection),
                      host_x, host_y (its centroid, px, image coordinates), host_axis_ratio,
                      host_half_light_radius (px), host_flux (flag band, nmgy),
                      fwhm (px), n_injected, and per flux ratio of the grid (the table's
                      `flux_ratios` meta) n_per_ratio, completeness_iou, completeness_centre:
                      the cutout's own curve, to correct its counts.
    completeness.json the settings, the model and threshold, recovered fractions against flux
                      ratio, SNR, galactocentric distance, flux ratio and distance together, and
                      host axis ratio for both rules; the flux ratio at 50 % and 80 % completeness
                      (`flux_ratio_at`) and the cost.
    completeness.png  the four curves (`plots.plot_selection_function`).

Model-free apart from the detector it is given (no TensorFlow imported here).

Shape shorthand: N injected clumps, K flux ratios of the grid.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy import units as u
from astropy.table import Table, vstack
from tqdm.auto import tqdm

from gsfc_tf import conventions
from gsfc_tf.bands import BAND_PLACEHOLDER, BandImages, check_band_options, read_bands
from gsfc_tf.catalogue import unique_galaxy_ids
from gsfc_tf.evaluation import DEFAULT_SNR_BIN_EDGES, ImageBoxes, greedy_match
from gsfc_tf.host import Host, detection_image, host_fluxes, pixel_noise, segment_host
from gsfc_tf.images import fits_picture
from gsfc_tf.injection import (
    DEFAULT_COLOUR_RANGES,
    PsfProfile,
    aperture_snr,
    clump_fluxes,
    draw_positions,
    gaussian_psf,
    inject_clumps,
    truth_boxes,
)
from gsfc_tf.photometry import FLUX_RATIO_FLAGS, NANOMAGGY_ZERO_POINT

if TYPE_CHECKING:
    # Annotations only: loading the detector's module would import TensorFlow.
    from gsfc_tf.detector import Detector

__all__ = [
    "AXIS_RATIO_BIN_EDGES",
    "COMPLETENESS_LEVELS",
    "DEFAULT_FLUX_RATIOS",
    "DISTANCE_BIN_EDGES",
    "MATCH_RULES",
    "CompletenessResult",
    "InjectionSettings",
    "check_inputs",
    "corrected_clumpy_fraction",
    "flux_ratio_at",
    "match_injected",
    "measure_completeness",
    "summarise",
    "write_completeness",
]

DEFAULT_FLUX_RATIOS = tuple(float(f) for f in np.geomspace(0.01, 0.30, 8))
COMPLETENESS_LEVELS = (0.5, 0.8)
# The two match rules, reported separately: IoU >= 0.5 with the truth box (the paper's), and a
# detection centre within `CENTRE_MATCH_FWHM` PSF FWHMs.
MATCH_RULES = ("iou", "centre")
MATCH_IOU = 0.5
CENTRE_MATCH_FWHM = 1.0
DISTANCE_BIN_EDGES = (0.5, 1.0, 1.5, 2.0, 3.0)  # host half-light radii
AXIS_RATIO_BIN_EDGES = (0.4, 0.6, 0.8)
_PICTURE_BANDS = ("g", "r", "i")


@dataclasses.dataclass(frozen=True)
class InjectionSettings:
    """What is injected, where and how often (module docstring).

    Attributes:
        flux_ratios: clump/host flux ratios in the flag band, increasing, each in (0, 1).
        clumps_per_ratio: clumps injected per cutout at each ratio.
        clumps_per_image: clumps injected at once into one copy of a cutout.
        flag_band: the band of the ratio; None for each cutout's bluest (u for SDSS), as the
            catalogue's flags (`photometry`).
        colour_ranges: "a-b" -> (low, high) AB colour of adjacent bands, drawn uniformly
            (`injection.clump_fluxes`).
        max_size_fwhm: intrinsic Gaussian sigma of the clumps, drawn uniformly from 0 to this
            many PSF FWHMs (0: point sources).
        psf: the PSF profile (`injection.gaussian_psf`, `injection.moffat_psf(beta)`, ...).
        snr_band: the band of the clumps' SNR (the flag band where a cutout lacks it).
        seed: the random seed.
    """

    flux_ratios: tuple[float, ...] = DEFAULT_FLUX_RATIOS
    clumps_per_ratio: int = 6
    clumps_per_image: int = 3
    flag_band: str | None = None
    colour_ranges: Mapping[str, tuple[float, float]] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_COLOUR_RANGES)
    )
    max_size_fwhm: float = 0.0
    psf: PsfProfile = gaussian_psf
    snr_band: str = "r"
    seed: int = 0

    def __post_init__(self):
        ratios = np.asarray(self.flux_ratios, np.float64)
        if ratios.ndim != 1 or not len(ratios) or np.any((ratios <= 0) | (ratios >= 1)) or np.any(np.diff(ratios) <= 0):
            raise ValueError(f"flux_ratios must increase within (0, 1), got {self.flux_ratios}")
        for name in ("clumps_per_ratio", "clumps_per_image"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.max_size_fwhm >= 0:
            raise ValueError(f"max_size_fwhm must be >= 0, got {self.max_size_fwhm!r}")

    def as_json(self) -> dict[str, Any]:
        """The settings as JSON values (the PSF by name)."""
        return {
            **{field.name: getattr(self, field.name) for field in dataclasses.fields(self) if field.name != "psf"},
            "flux_ratios": list(self.flux_ratios),
            "colour_ranges": {pair: list(bounds) for pair, bounds in self.colour_ranges.items()},
            "psf": getattr(self.psf, "__name__", repr(self.psf)),
        }


@dataclasses.dataclass(frozen=True)
class CompletenessResult:
    """What `measure_completeness` found (the tables and summary of the module docstring)."""

    injections: Table
    galaxies: Table
    summary: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class _Galaxy:
    """One cutout ready for injection: its bands, host and picture."""

    galaxy_id: str
    path: Path
    bands: BandImages
    flag_band: str
    light: np.ndarray  # float64 [H, W] the host's detection image (`host.detection_image`), as stored
    host: Host
    host_flux: float  # flag band, the images' unit
    picture: np.ndarray  # uint8 [H, W, 3], as read_image makes it

    @property
    def nanomaggies_per_unit(self) -> float:
        """Nanomaggies in one unit of the flag band's image."""
        return 10 ** (-0.4 * (self.bands.zero_points[self.flag_band] - NANOMAGGY_ZERO_POINT))

    @property
    def injectable(self) -> bool:
        return self.host.found and self.host_flux > 0


def _required_bands(flag_band: str | None) -> tuple[str, ...]:
    return _PICTURE_BANDS if flag_band is None else (*_PICTURE_BANDS, flag_band)


def check_inputs(
    paths: Sequence[str | Path], *, flag_band: str | None = None, band_options: Mapping | None = None
) -> None:
    """Refuses, with one line, inputs injection cannot use: before any work is done.

    Args:
        paths: the cutouts (`gsfc_tf.bands` layouts).
        flag_band: the flux ratio's band; None for each cutout's bluest.
        band_options: `bands.read_bands`' keyword arguments, for what the headers lack.

    Raises:
        ValueError: no inputs, or a file that is not a FITS cutout naming its bands with g, r, i
            and the flag band, zero points and PSF FWHMs (`bands.BandReadError`).
    """
    if not paths:
        raise ValueError("no input cutouts")
    for path in paths:
        if BAND_PLACEHOLDER not in str(path) and not Path(path).is_file():
            raise ValueError(f"{path}: no such file")
        read_bands(path, required=_required_bands(flag_band), **check_band_options(band_options))


def _picture(images: Mapping[str, np.ndarray]) -> np.ndarray:
    return fits_picture(*(images[band] for band in _PICTURE_BANDS))[0]


def _prepare(path: Path, galaxy_id: str, flag_band: str | None, band_options: Mapping | None) -> _Galaxy:
    bands = read_bands(path, required=_required_bands(flag_band), **check_band_options(band_options))
    flag = flag_band or next(iter(bands.images))  # bands come bluest first
    # The host as `predict` finds it (`catalogue.read_science`, `catalogue.catalogue_galaxy`).
    light = detection_image(bands.images.values())
    host = segment_host(light, fwhm_px=bands.reference_fwhm_px)  # under the cutout's centre
    host_flux = host_fluxes({flag: bands.images[flag]}, host)[flag]
    return _Galaxy(galaxy_id, path, bands, flag, light, host, host_flux, _picture(bands.images))


def _detect(detector: Detector, pictures: Sequence[np.ndarray], *, min_score: float, batch_size: int) -> list[ImageBoxes]:
    """The detections scoring >= `min_score` of each picture, batched by picture size."""
    found: list[ImageBoxes | None] = [None] * len(pictures)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, picture in enumerate(pictures):
        by_shape.setdefault(picture.shape, []).append(index)
    for indices in by_shape.values():
        for start in range(0, len(indices), batch_size):
            batch = indices[start : start + batch_size]
            for index, boxes in zip(batch, detector.detect_boxes(np.stack([pictures[i] for i in batch]))):
                found[index] = boxes.select(boxes.scores >= min_score)
    return found


def match_injected(truths_yxyx, detections: ImageBoxes, *, fwhm_px: float) -> dict[str, np.ndarray]:
    """Which injected clumps the detections recover, by each of `MATCH_RULES`.

    Args:
        truths_yxyx: [N, 4] the injected clumps' boxes (`injection.truth_boxes`), image px.
        detections: the detections (with scores) on the injected picture, image px.
        fwhm_px: the PSF FWHM, px: the centre rule's distance is `CENTRE_MATCH_FWHM` of it.

    Returns:
        rule -> bool [N]: matched one to one, greedily by score (`evaluation.greedy_match`).
    """
    criteria = {
        "iou": {"iou_threshold": MATCH_IOU},
        "centre": {"iou_threshold": None, "centre_distance": CENTRE_MATCH_FWHM * fwhm_px},
    }
    truths = np.asarray(truths_yxyx, np.float64).reshape(-1, 4)
    recovered = {}
    for rule, criterion in criteria.items():
        matched = greedy_match(truths, detections.boxes_yxyx, detections.scores, **criterion)
        recovered[rule] = np.isin(np.arange(len(truths)), matched)
    return recovered


@dataclasses.dataclass(frozen=True)
class _Injected:
    """One injected copy of a cutout: its picture and its clumps' rows (without recovery yet)."""

    picture: np.ndarray
    truths_yxyx: np.ndarray
    rows: Table


def _inject(galaxy: _Galaxy, existing: ImageBoxes, settings: InjectionSettings, rng: np.random.Generator) -> list[_Injected]:
    """Every injected copy of one cutout, ratio by ratio (steps 2 and 3 of the module docstring)."""
    bands, host = galaxy.bands, galaxy.host
    fwhm = bands.reference_fwhm_px
    height, width = galaxy.picture.shape[:2]
    # In image coordinates (top row first), the frame of boxes and detections.
    light, mask = galaxy.light[::-1], host.mask[::-1]
    window = conventions.detector_window(height, width)
    snr_band = settings.snr_band if settings.snr_band in bands.images else galaxy.flag_band
    noise = pixel_noise(bands.images[snr_band])
    injected = []
    for ratio in settings.flux_ratios:
        image = 0
        for start in range(0, settings.clumps_per_ratio, settings.clumps_per_image):
            wanted = min(settings.clumps_per_image, settings.clumps_per_ratio - start)
            centres = draw_positions(light, mask, wanted, fwhm_px=fwhm, window_yxyx=window,
                                     avoid_yxyx=existing.boxes_yxyx, rng=rng)
            n = len(centres)
            if not n:
                continue
            fluxes = clump_fluxes(ratio, galaxy.host_flux, bands=list(bands.images), flag_band=galaxy.flag_band,
                                  zero_points=bands.zero_points, n=n, colour_ranges=settings.colour_ranges, rng=rng)
            sizes = rng.uniform(0.0, settings.max_size_fwhm * fwhm, n)
            centres_fits = np.stack(conventions.image_to_fits_pixels(centres[:, 0], centres[:, 1], height=height), 1)
            images = inject_clumps(bands.images, centres_fits, fluxes, fwhm_px=bands.psf_fwhm_px, sizes_px=sizes,
                                   psf=settings.psf, gains=bands.gains, noise_rng=rng)
            rows = Table()
            rows["galaxy_id"] = [galaxy.galaxy_id] * n
            rows["flux_ratio"] = np.full(n, ratio)
            rows["image"] = np.full(n, image)
            rows["x"], rows["y"] = centres[:, 0] * u.pix, centres[:, 1] * u.pix
            rows["size"] = sizes * u.pix
            rows["flux"] = fluxes[galaxy.flag_band] * galaxy.nanomaggies_per_unit * u.nmgy
            rows["snr"] = aperture_snr(images[snr_band], centres_fits, fluxes[snr_band], fwhm_px=bands.psf_fwhm_px[snr_band],
                                       noise=noise, gain=bands.gains[snr_band], sizes_px=sizes)
            distance = np.hypot(centres_fits[:, 0] - host.x, centres_fits[:, 1] - host.y)
            rows["distance_re"] = distance / host.half_light_radius
            rows["host_axis_ratio"] = np.full(n, host.axis_ratio)
            injected.append(_Injected(_picture(images), truth_boxes(centres, fwhm), rows))
            image += 1
    return injected


def _galaxy_row(galaxy: _Galaxy, n_detections: int, injections: Table | None, ratios: Sequence[float]) -> dict[str, Any]:
    """The cutout's row of the galaxy table (module docstring)."""
    host = galaxy.host
    curves = _by_flux_ratio(injections, ratios)
    host_x, host_y = conventions.fits_pixels_to_image(host.x, host.y, height=galaxy.picture.shape[0])
    return {
        "galaxy_id": galaxy.galaxy_id, "path": str(galaxy.path), "host_flag": host.flag, "n_detections": n_detections,
        "host_x": float(host_x), "host_y": float(host_y),
        "host_axis_ratio": host.axis_ratio, "host_half_light_radius": host.half_light_radius,
        "host_flux": galaxy.host_flux * galaxy.nanomaggies_per_unit, "fwhm": galaxy.bands.reference_fwhm_px,
        "n_injected": 0 if injections is None else len(injections),
        "n_per_ratio": np.asarray(curves["n"], np.int64),
        **{f"completeness_{rule}": np.asarray(curves[f"completeness_{rule}"], np.float64) for rule in MATCH_RULES},
    }


_GALAXY_UNITS = {"host_x": u.pix, "host_y": u.pix, "host_half_light_radius": u.pix, "host_flux": u.nmgy, "fwhm": u.pix}


def measure_completeness(
    detector: Detector,
    paths: Sequence[str | Path],
    *,
    min_score: float,
    settings: InjectionSettings = InjectionSettings(),
    batch_size: int = 8,
    progress: bool = False,
    band_options: Mapping | None = None,
) -> CompletenessResult:
    """Injects clumps into FITS cutouts and measures which the detector recovers (module docstring).

    Args:
        detector: a `gsfc_tf.detector.Detector` (`detector.load_detector`), or anything with its
            `detect_boxes`.
        paths: FITS cutouts naming their bands (`gsfc_tf.bands`), each once.
        min_score: the detections kept, as `predict` keeps them (`detector.default_min_score`).
        settings: what to inject.
        batch_size: pictures per detector call.
        progress: show a tqdm bar over the cutouts.
        band_options: `bands.read_bands`' keyword arguments, for what the headers lack.

    Returns:
        A `CompletenessResult`.

    Raises:
        ValueError: an input injection cannot use (`check_inputs`), bad settings, or no cutout
            with a host to inject into.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    paths = [Path(p) for p in paths]
    check_inputs(paths, flag_band=settings.flag_band, band_options=band_options)
    ids = unique_galaxy_ids(paths)
    started = time.perf_counter()
    detector_seconds, n_pictures = 0.0, 0

    def detect(pictures: list[np.ndarray]) -> list[ImageBoxes]:
        nonlocal detector_seconds, n_pictures
        tick = time.perf_counter()
        found = _detect(detector, pictures, min_score=min_score, batch_size=batch_size)
        detector_seconds += time.perf_counter() - tick
        n_pictures += len(pictures)
        return found

    tables, galaxy_rows = [], []
    with tqdm(total=len(paths), desc="completeness", unit="galaxy", disable=not progress) as bar:
        # A batch of cutouts at a time: their pictures, then all their injected copies, share detector calls.
        for start in range(0, len(paths), batch_size):
            indices = range(start, min(start + batch_size, len(paths)))
            galaxies = [_prepare(paths[k], ids[k], settings.flag_band, band_options) for k in indices]
            existing = detect([galaxy.picture for galaxy in galaxies])
            copies = [
                _inject(galaxy, found, settings, np.random.default_rng([settings.seed, k])) if galaxy.injectable else []
                for k, galaxy, found in zip(indices, galaxies, existing)
            ]
            detections = iter(detect([copy.picture for plan in copies for copy in plan]))
            for galaxy, found, plan in zip(galaxies, existing, copies):
                for copy in plan:
                    recovered = match_injected(copy.truths_yxyx, next(detections), fwhm_px=galaxy.bands.reference_fwhm_px)
                    for rule in MATCH_RULES:
                        copy.rows[f"recovered_{rule}"] = recovered[rule]
                table = vstack([copy.rows for copy in plan]) if plan else None
                tables += [] if table is None else [table]
                galaxy_rows.append(_galaxy_row(galaxy, len(found), table, settings.flux_ratios))
            bar.update(len(indices))
    if not tables:
        flags = sorted({row["host_flag"] for row in galaxy_rows} - {""})
        raise ValueError(
            f"no clump could be injected into any of the {len(paths)} cutouts "
            f"({'hosts not found: ' + ', '.join(flags) if flags else 'no room on the hosts'})"
        )
    seconds = time.perf_counter() - started
    injections = vstack(tables)
    galaxies_table = Table(rows=galaxy_rows, units=_GALAXY_UNITS)
    galaxies_table.meta["flux_ratios"] = list(settings.flux_ratios)
    summary = {
        "detector": getattr(detector, "source", type(detector).__name__),
        "min_score": float(min_score),
        "settings": settings.as_json(),
        "n_galaxies": len(paths),
        "n_galaxies_injected": int(np.count_nonzero(galaxies_table["n_injected"])),
        **summarise(injections, settings.flux_ratios),
        "cost": {
            "seconds": seconds,
            "detector_seconds": detector_seconds,
            "detector_pictures": n_pictures,
            "seconds_per_injected_clump": seconds / len(injections),
        },
    }
    return CompletenessResult(injections, galaxies_table, summary)


def _completeness(n: np.ndarray, n_recovered: np.ndarray) -> list[float | None]:
    """Recovered over injected per bin; None (JSON null) for an empty bin."""
    return [None if total == 0 else float(found / total) for total, found in zip(n, n_recovered)]


def _by_flux_ratio(injections: Table | None, ratios: Sequence[float]) -> dict[str, list]:
    """Injected and recovered clumps at each flux ratio of the grid, by each rule."""
    at = [np.zeros(0, bool)] * len(ratios) if injections is None else [
        np.asarray(injections["flux_ratio"]) == ratio for ratio in ratios
    ]
    n = np.array([np.count_nonzero(selected) for selected in at])
    curves = {"flux_ratio": list(ratios), "n": n.tolist()}
    for rule in MATCH_RULES:
        recovered = [0 if injections is None else int(np.count_nonzero(injections[f"recovered_{rule}"][s])) for s in at]
        curves[f"completeness_{rule}"] = _completeness(n, recovered)
    return curves


def _binned(injections: Table, column: str, edges: Sequence[float]) -> dict[str, Any]:
    """Recovered fractions in bins of a per-clump value; the outer bins are open-ended, NaN values in none."""
    values = np.asarray(injections[column], np.float64)
    known = np.isfinite(values)
    bins = np.digitize(values[known], edges)
    labels = [f"<{edges[0]:g}", *(f"{lo:g}–{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])), f"≥{edges[-1]:g}"]
    n = np.bincount(bins, minlength=len(labels))
    result = {"bin_edges": list(edges), "labels": labels, "n": n.tolist(), "n_unknown": int(np.count_nonzero(~known))}
    for rule in MATCH_RULES:
        recovered = np.bincount(bins, weights=np.asarray(injections[f"recovered_{rule}"])[known], minlength=len(labels))
        result[f"completeness_{rule}"] = _completeness(n, recovered)
    return result


def _by_flux_ratio_and_distance(injections: Table, ratios: Sequence[float]) -> dict[str, Any]:
    """`_binned` by galactocentric distance at each flux ratio: lists [K][distance bins].

    Completeness at one flux ratio depends on where a clump sits (faint ones are lost on the
    bright centre), so a population placed otherwise than the host's light (a user's catalogue,
    whose rows carry `distance_re`) is corrected with this, not the flux-ratio curve alone.
    """
    rows = [_binned(injections[np.asarray(injections["flux_ratio"]) == ratio], "distance_re", DISTANCE_BIN_EDGES)
            for ratio in ratios]
    table = {"flux_ratio": list(ratios), "distance_bin_edges": list(DISTANCE_BIN_EDGES), "labels": rows[0]["labels"]}
    for key in ("n", *(f"completeness_{rule}" for rule in MATCH_RULES)):
        table[key] = [row[key] for row in rows]
    return table


def flux_ratio_at(ratios: Sequence[float], completeness: Sequence[float | None], level: float) -> dict[str, Any]:
    """The flux ratio where a completeness curve first reaches `level`, interpolated linearly in log ratio.

    Empty grid points (None or NaN) are skipped. Between the last point below `level` and the first
    at or above it, log(ratio) is interpolated linearly in completeness.

    Returns:
        {"level", "flux_ratio", "how"}: how is "interpolated"; "below_grid" when the lowest ratio
        already reaches it (flux_ratio is that ratio, an upper bound); "not_reached" (flux_ratio
        None) when no ratio does.
    """
    points = [(r, c) for r, c in zip(ratios, completeness) if c is not None and math.isfinite(c)]
    reached = [k for k, (_, c) in enumerate(points) if c >= level]
    if not reached:
        return {"level": level, "flux_ratio": None, "how": "not_reached"}
    k = reached[0]
    if k == 0:
        return {"level": level, "flux_ratio": float(points[0][0]), "how": "below_grid"}
    (r0, c0), (r1, c1) = points[k - 1], points[k]
    log_ratio = math.log(r0) + (level - c0) / (c1 - c0) * (math.log(r1) - math.log(r0))
    return {"level": level, "flux_ratio": math.exp(log_ratio), "how": "interpolated"}


def summarise(injections: Table, ratios: Sequence[float]) -> dict[str, Any]:
    """The recovered fractions of `completeness.json` from the injection table (module docstring)."""
    by_ratio = _by_flux_ratio(injections, ratios)
    return {
        "n_injected": len(injections),
        "match_rules": {"iou": f"IoU >= {MATCH_IOU:g} with the injected clump's box",
                        "centre": f"detection centre within {CENTRE_MATCH_FWHM:g} PSF FWHM"},
        "by_flux_ratio": by_ratio,
        "flux_ratio_flags": list(FLUX_RATIO_FLAGS),
        "flux_ratio_at": {
            rule: [flux_ratio_at(ratios, by_ratio[f"completeness_{rule}"], level) for level in COMPLETENESS_LEVELS]
            for rule in MATCH_RULES
        },
        "by_snr": _binned(injections, "snr", DEFAULT_SNR_BIN_EDGES),
        "by_distance_re": _binned(injections, "distance_re", DISTANCE_BIN_EDGES),
        "by_flux_ratio_and_distance_re": _by_flux_ratio_and_distance(injections, ratios),
        "by_host_axis_ratio": _binned(injections, "host_axis_ratio", AXIS_RATIO_BIN_EDGES),
    }


def write_completeness(result: CompletenessResult, out_dir: str | Path) -> dict[str, Path]:
    """Writes the tables, `completeness.json` and the figure into `out_dir` (made if missing; files replaced).

    Returns:
        name -> path written: injections, galaxies, summary, plot.
    """
    from gsfc_tf.plots import plot_selection_function

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"injections": out / "injections.ecsv", "galaxies": out / "galaxies.ecsv",
               "summary": out / "completeness.json", "plot": out / "completeness.png"}
    result.injections.write(written["injections"], format="ascii.ecsv", overwrite=True)
    result.galaxies.write(written["galaxies"], format="ascii.ecsv", overwrite=True)
    written["summary"].write_text(json.dumps(result.summary, indent=2) + "\n")
    plot_selection_function(result.summary).savefig(written["plot"], dpi=120)
    return written


def corrected_clumpy_fraction(
    flux_ratios_by_galaxy: Sequence[Sequence[float]],
    summary: Mapping[str, Any],
    *,
    threshold: float = FLUX_RATIO_FLAGS[1],
    rule: str = "centre",
) -> dict[str, float]:
    """The fraction of galaxies with a clump above `threshold`, observed and corrected for completeness.

    A galaxy is clumpy when one of its catalogued clumps has a flux ratio (flag band) of at least
    `threshold` (8 %: Adams et al. 2022's giant clumps). Each clumpy galaxy counts 1 / C, C the
    completeness at its brightest clump's ratio (`summary`'s curve, interpolated in log ratio and
    held at the grid's ends): a galaxy whose one giant clump is found with probability C stands for
    1 / C such galaxies. Galaxies with several giant clumps are found more often than that, so the
    correction is an upper bound; false detections are not removed.

    Args:
        flux_ratios_by_galaxy: per galaxy, its catalogued clumps' flux ratios (empty: none).
        summary: `CompletenessResult.summary` (or `completeness.json`) of the same survey.
        threshold: the flux ratio of a giant clump.
        rule: the match rule of the completeness curve; "centre" as photometry measures clumps.

    Returns:
        {"n_galaxies", "n_clumpy", "observed", "corrected"}.
    """
    curve = summary["by_flux_ratio"]
    known = [(r, c) for r, c in zip(curve["flux_ratio"], curve[f"completeness_{rule}"]) if c is not None]
    log_ratios, completeness = np.log([r for r, _ in known]), np.array([c for _, c in known])
    brightest = [max((r for r in ratios if math.isfinite(r)), default=-math.inf) for ratios in flux_ratios_by_galaxy]
    clumpy = [ratio for ratio in brightest if ratio >= threshold]
    found = np.interp(np.log(clumpy), log_ratios, completeness) if clumpy else np.zeros(0)
    # Where no injected clump was found, a found one cannot be weighted: it counts once.
    weights = 1 / np.where(found > 0, found, 1.0)
    n = len(brightest)
    return {
        "n_galaxies": n,
        "n_clumpy": len(clumpy),
        "observed": len(clumpy) / n,
        "corrected": float(min(weights.sum(), n) / n),
    }
