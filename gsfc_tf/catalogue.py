"""Clump catalogues: read cutouts (PNG/JPEG/FITS), detect in batches, turn detections into rows, write CSV/FITS.

A catalogue run writes two tables: the clump catalogue (one `CatalogueRow` per clump) and, beside
it, the image table (`image_table_path`: one `ImageStatusRow` per input, so an input with no
clumps or an unreadable one is on record too). Galaxy ids come from `unique_galaxy_ids`.

Science: this module only composes the detector with the model-free steps (`catalogue_galaxy`):
the host galaxy (`gsfc_tf.host.segment_host`) on each cutout's `read_science` image, the host
mask (`HOST_MASK_MODES`), and for FITS cutouts whose HDUs name their bands (`gsfc_tf.bands`)
clump photometry (`gsfc_tf.photometry.merge_detections`, then `clump_photometry` with
`PHOTOMETRY_RESOLVED`). FITS tables carry the units below, as astropy writes a `QTable`: TUNIT
for the FITS standard's, and every unit (nmgy too, which the standard lacks) in astropy's column
metadata in the header, so `Table.read` gets them back without a warning. CSV tables have the
same columns, booleans written True/False and missing numbers empty or nan.

Clump catalogue columns (`CatalogueRow`):
    galaxy_id                     the galaxy's id.
    x_min, y_min, x_max, y_max    the box, px of the cutout (image coordinates, below).
    x_centre, y_centre            its centre, px.
    class_name, class_id          clump (0) or odd_clump (1).
    score                         the detector's score.
    ra, dec                       the centre's sky position, deg (the WCS's frame); NaN without a WCS.
    host_flag                     "" when the host was found; else why not (`CATALOGUE_HOST_FLAGS`:
                                  no_segment_at_centre, no_valid_pixels, not_segmented with
                                  --host-mask off): the host columns are then unknown.
    off_host                      the centre lies off the host's segment (`host.segment_host`), or
                                  the galaxy has no host; such rows are kept only with
                                  --host-mask flag. False with --host-mask off.
    merged_id                     the clump (per galaxy, from 0) this detection was measured as:
                                  detections closer than 1.5 PSF FWHM are merged and measured once
                                  at their mean position, so rows sharing it share the photometry;
                                  -1 without photometry.
    size                          the clump's intrinsic Gaussian sigma, px, fitted in all bands (0: unresolved).
    distance                      from the host's centroid, px.
    distance_arcsec               the same, arcsec.
    distance_re                   the same, in host half-light radii (dimensionless).
    is_clump_3pct, is_clump_8pct  flux_ratio in the bluest band present (u for SDSS) above 3 % / 8 %;
                                  False without photometry or host.
    per band b of PHOTOMETRY_BANDS (u, g, r, i, z), NaN where the cutout lacks b or has no photometry:
    flux_b, flux_err_b            aperture-corrected clump flux and its 1-sigma error, nanomaggies (nmgy).
    mag_b, mag_err_b              AB magnitude 22.5 - 2.5 log10(flux_b) and its error, mag (NaN if flux <= 0).
    host_flux_b                   the host's Kron flux, nmgy.
    flux_ratio_b                  flux_b / host_flux_b (dimensionless).
    u_g, g_r, r_i, i_z            colours of adjacent bands, mag.

Image table columns (`ImageStatusRow`; a survey's `SurveyImageRow` adds galaxy_ra, galaxy_dec):
    galaxy_id, path, status, reason, n_clumps, n_bad_pixels   as before (`ImageStatusRow`).
    host_flag                     as in the catalogue; not_segmented for unreadable inputs.
    host_x, host_y                the host's centroid, px (image coordinates of the cutout).
    host_semi_major_axis          RMS extent of its light along the major axis, px.
    host_axis_ratio               minor over major RMS extent (dimensionless).
    host_position_angle           the major axis, deg in [0, 180), counter-clockwise from +x as
                                  the cutout is shown (top row at the top; north up, east left
                                  for SDSS cutouts, so 90 deg is north-south).
    host_half_light_radius        radius of the circle holding half its Kron flux, px.
    host_area                     its segment's area, pix^2.
    host_fwhm                     the PSF FWHM it was smoothed with, px: the FITS r band's
                                  (PSFFWHM / PIXSCALE), else `DEFAULT_FWHM_PX` (3.5 px, SDSS's
                                  1.4 arcsec seeing at 0.396 arcsec/px).
    n_off_host                    detections off the host (dropped by default, --host-mask drop).
    photometry_note               why the cutout has no photometry ("" when measured): no bands
                                  (PNG/JPEG), or the band reader's one-line reason.

Pixel conventions:
    Image coordinates (boxes, catalogue columns) are continuous, with the origin at the top-left
    corner of the top-left pixel, x to the right and y down: pixel (row i, column j) spans
    [j, j + 1) x [i, i + 1) and has its centre at (j + 0.5, i + 0.5).

    FITS stores the bottom row first (y runs upward). `read_cutout` flips FITS planes to top
    row first, so they look like SDSS JPEG cutouts (north up) to the detector. The WCS keeps
    FITS' own pixel axes: astropy's 0-based pixel coordinates (centre of the first stored pixel
    at (0, 0); FITS counts that pixel (1, 1)). For an image of height H,
    x_wcs = x - 0.5 and y_wcs = H - 0.5 - y.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import QTable, Table
from astropy.wcs import WCS, FITSFixedWarning
from tqdm.auto import tqdm

from gsfc_tf import conventions
from gsfc_tf.bands import (
    BAND_PLACEHOLDER,
    KNOWN_BANDS,
    BandImages,
    BandReadError,
    check_band_options,
    psf_band,
    read_bands,
    read_hdus,
)
from gsfc_tf.evaluation import ImageBoxes
from gsfc_tf.host import HOST_FLAGS, Host, detection_image, segment_host
from gsfc_tf.images import FITS_SUFFIXES, PICTURE_SUFFIXES, UnreadableImageError, fits_picture, read_image
from gsfc_tf.photometry import clump_photometry, merge_detections

if TYPE_CHECKING:
    # Annotations only: loading the detector's module would import TensorFlow.
    from gsfc_tf.detector import Detector

__all__ = [
    "CATALOGUE_FORMATS",
    "CATALOGUE_HOST_FLAGS",
    "DEFAULT_FWHM_PX",
    "DEFAULT_HOST_MASK",
    "HOST_MASK_MODES",
    "IMAGE_STATUSES",
    "PHOTOMETRY_BANDS",
    "PHOTOMETRY_RESOLVED",
    "CatalogueRow",
    "Cutout",
    "GalaxyRows",
    "ImageStatusRow",
    "PredictionResult",
    "ScienceImage",
    "catalogue_format",
    "check_host_mask",
    "catalogue_galaxy",
    "check_output_file",
    "expand_image_paths",
    "galaxy_id",
    "image_status",
    "image_table_path",
    "is_glob_pattern",
    "iter_cutouts",
    "pixel_to_world",
    "predict_catalogue",
    "printable",
    "read_cutout",
    "read_galaxy",
    "read_science",
    "rows_from_detections",
    "unique_galaxy_ids",
    "write_catalogue",
    "write_image_table",
]

# What became of one input image: clumps found at the minimum score, none found, or not readable.
IMAGE_STATUSES = ("detected", "no_clumps", "unreadable")
# Table formats and the file-name suffixes that name them.
CATALOGUE_FORMATS = {"csv": (".csv",), "fits": (".fits", ".fit", ".fts")}
_GLOB_CHARACTERS = frozenset("*?[")

_LOG = logging.getLogger(__name__)


# How the host mask treats detections off the host's segment: drop them, keep them with `off_host`
# true, or do not segment the host at all. Dropping is the default: on synthetic galaxies with the
# truth, 0.020 (FITS) and 0.011 (PNG) of the true clumps lie off the host's segment, while most
# detections on the Hubble deep field's other galaxies do (`gsfc_tf.host`'s docstring).
HOST_MASK_MODES = ("drop", "flag", "off")
DEFAULT_HOST_MASK = "drop"


def check_host_mask(host_mask: str) -> None:
    """Raises ValueError unless `host_mask` is one of `HOST_MASK_MODES`."""
    if host_mask not in HOST_MASK_MODES:
        raise ValueError(f"host_mask must be one of {HOST_MASK_MODES}, got {host_mask!r}")
# Why a galaxy has no host measurement: `host.HOST_FLAGS`, and "not_segmented" (`--host-mask off`,
# or an unreadable input).
CATALOGUE_HOST_FLAGS = (*HOST_FLAGS, "not_segmented")
# PSF FWHM (px) where a cutout does not give one: SDSS's typical r-band seeing, 1.4 arcsec at
# 0.396 arcsec per pixel (the Clump Scout cutouts' scale; the model's crop is not rescaled).
DEFAULT_FWHM_PX = 3.5
# Bands with photometry columns in every catalogue (SDSS's, bluest first); NaN where a cutout lacks one.
PHOTOMETRY_BANDS = ("u", "g", "r", "i", "z")
# Clump photometry corrects for each clump's fitted size (`photometry.clump_photometry(resolved=True)`):
# measured on the generator's clumps (photometry module docstring) it leaves a median |relative
# error| of 0.056-0.089 where the authors' point-source correction leaves 0.11-0.18 (a -0.13 bias),
# and the 3 % / 8 % flags agree with the truth nearly as often (0.94 / 0.98 against 0.95 / 0.995).
PHOTOMETRY_RESOLVED = True
# Where a cutout's header gives the PSF FWHM (FITS with named bands), each box's side is
# `conventions.BOX_SIDE_PER_PSF_FWHM` x the r band's FWHM, centres kept: a point-like clump's box is
# set by the seeing, not by what the model read off the clump. On `synthetic_heldout` (every side
# set by the PSF) this lifts the `smoke` model from 0.589 / 0.596 to 0.769 / 0.779 at IoU 0.5, the
# same as its by-centre score (RESULTS.md, "Own test and the held-out renderer").
PSF_BOX_SIDES = True
_PER_BAND_COLUMNS = (
    ("flux", u.nmgy), ("flux_err", u.nmgy), ("mag", u.mag), ("mag_err", u.mag),
    ("host_flux", u.nmgy), ("flux_ratio", u.dimensionless_unscaled),
)
_COLOURS = tuple(f"{bluer}_{redder}" for bluer, redder in zip(PHOTOMETRY_BANDS, PHOTOMETRY_BANDS[1:]))
_BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max", "x_centre", "y_centre")


@dataclasses.dataclass(frozen=True)
class _DetectionColumns:
    """The detection, host and distance columns of a `CatalogueRow` (see the module docstring)."""

    galaxy_id: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    x_centre: float
    y_centre: float
    class_name: str
    class_id: int
    score: float
    ra: float = math.nan  # degrees (ICRS or the WCS's frame); NaN without a WCS
    dec: float = math.nan
    host_flag: str = "not_segmented"
    off_host: bool = False
    merged_id: int = -1
    size: float = math.nan
    distance: float = math.nan
    distance_arcsec: float = math.nan
    distance_re: float = math.nan
    is_clump_3pct: bool = False
    is_clump_8pct: bool = False


# One detected clump: `_DetectionColumns`, then per band b of `PHOTOMETRY_BANDS` flux_b,
# flux_err_b, mag_b, mag_err_b, host_flux_b, flux_ratio_b, then the colours u_g, g_r, r_i, i_z.
CatalogueRow = dataclasses.make_dataclass(
    "CatalogueRow",
    [
        *[(f"{column}_{band}", "float", dataclasses.field(default=math.nan))
          for band in PHOTOMETRY_BANDS for column, _ in _PER_BAND_COLUMNS],
        *[(colour, "float", dataclasses.field(default=math.nan)) for colour in _COLOURS],
    ],
    bases=(_DetectionColumns,),
    frozen=True,
    namespace={
        "__doc__": "One detected clump: its box (cutout px), class, score, sky position, host and photometry "
        "columns (module docstring).",
        "__module__": __name__,
        # Units of the columns that have one, for the table writers.
        "UNITS": {
            "ra": u.deg, "dec": u.deg, **dict.fromkeys(_BOX_COLUMNS, u.pix), "size": u.pix, "distance": u.pix,
            "distance_arcsec": u.arcsec, "distance_re": u.dimensionless_unscaled,
            **{f"{column}_{band}": unit for band in PHOTOMETRY_BANDS for column, unit in _PER_BAND_COLUMNS},
            **dict.fromkeys(_COLOURS, u.mag),
        },
    },
)


@dataclasses.dataclass(frozen=True)
class ImageStatusRow:
    """One input image of a catalogue run and what became of it.

    Attributes:
        galaxy_id: the id its clumps carry in the catalogue (`unique_galaxy_ids`).
        path: the input as given.
        status: one of `IMAGE_STATUSES`.
        reason: why it could not be read; empty unless `status` is `unreadable`.
        n_clumps: catalogue rows of this image; > 0 exactly when `status` is `detected`.
        n_bad_pixels: NaN or infinite FITS pixels, drawn black for the detector (`images.Image`).
        host_flag .. photometry_note: the host and photometry columns (module docstring).
    """

    galaxy_id: str
    path: str
    status: str
    reason: str = ""
    n_clumps: int = 0
    n_bad_pixels: int = 0
    host_flag: str = "not_segmented"
    host_x: float = math.nan
    host_y: float = math.nan
    host_semi_major_axis: float = math.nan
    host_axis_ratio: float = math.nan
    host_position_angle: float = math.nan
    host_half_light_radius: float = math.nan
    host_area: float = math.nan
    host_fwhm: float = math.nan
    n_off_host: int = 0
    photometry_note: str = ""

    UNITS: ClassVar[dict[str, u.Unit]] = {
        "host_x": u.pix, "host_y": u.pix, "host_semi_major_axis": u.pix, "host_axis_ratio": u.dimensionless_unscaled,
        "host_position_angle": u.deg, "host_half_light_radius": u.pix, "host_area": u.pix**2, "host_fwhm": u.pix,
    }

    def __post_init__(self):
        if self.status not in IMAGE_STATUSES:
            raise ValueError(f"status must be one of {IMAGE_STATUSES}, got {self.status!r}")
        if (self.status == "unreadable") != bool(self.reason):
            raise ValueError(f"{self.path}: a reason is given for, and only for, an unreadable image")
        if (self.status == "detected") != (self.n_clumps > 0):
            raise ValueError(f"{self.path}: status {self.status!r} with {self.n_clumps} clumps")
        if self.host_flag not in CATALOGUE_HOST_FLAGS:
            raise ValueError(f"host_flag must be one of {CATALOGUE_HOST_FLAGS}, got {self.host_flag!r}")


# Table column types follow the row dataclasses' field annotations.
_COLUMN_DTYPES = {"str": str, "int": np.int64, "float": np.float64, "bool": bool}


def _as_wcs(header_or_wcs: fits.Header | WCS) -> WCS:
    if isinstance(header_or_wcs, WCS):
        return header_or_wcs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header_or_wcs).celestial


def pixel_to_world(
    header_or_wcs: fits.Header | WCS, x, y, *, image_height: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sky coordinates of image coordinates (top-left origin, y down) of a `read_cutout` image.

    Args:
        header_or_wcs: a FITS header with a celestial WCS, or an astropy `WCS`.
        x: [...] image x (px, continuous, 0 at the left edge).
        y: [...] image y (px, continuous, 0 at the top edge).
        image_height: rows of the image; default the WCS's NAXIS2 (set when read from a file).

    Returns:
        (ra, dec) in degrees, each shaped like `x`.
    """
    wcs = _as_wcs(header_or_wcs)
    if image_height is None:
        if wcs.pixel_shape is None:
            raise ValueError("the WCS has no image size (NAXIS2): pass image_height")
        image_height = wcs.pixel_shape[1]
    ra, dec = wcs.all_pix2world(*conventions.image_to_fits_pixels(x, y, height=image_height), 0)
    return np.asarray(ra), np.asarray(dec)


def rows_from_detections(
    galaxy_id: str,
    detections: ImageBoxes,
    *,
    wcs: WCS | None = None,
    class_names: Sequence[str] = conventions.CLASS_NAMES,
    min_score: float = 0.0,
) -> list[CatalogueRow]:
    """Catalogue rows for one galaxy's detections scoring at least `min_score`.

    Args:
        galaxy_id: identifier written in every row.
        detections: `ImageBoxes` with scores, in pixels of the cutout (a `Detector` maps its
            boxes back to the images it was given).
        wcs: the cutout's celestial WCS (from `read_cutout`), or None for NaN RA/Dec.
        class_names: name of class id i is `class_names[i]`.
        min_score: the catalogue's operating threshold; lower-scoring detections get no row.

    Returns:
        One `CatalogueRow` per kept detection, in input order.
    """
    if detections.scores is None:
        raise ValueError("detections need scores")
    detections = detections.select(detections.scores >= min_score)
    boxes = detections.boxes_yxyx
    y_min, x_min, y_max, x_max = boxes.T
    x_centre, y_centre = conventions.box_centres_xy(boxes).T
    ra, dec = (np.full(len(boxes), np.nan),) * 2 if wcs is None else pixel_to_world(wcs, x_centre, y_centre)
    return [
        CatalogueRow(
            galaxy_id=str(galaxy_id),
            x_min=float(x_min[k]), y_min=float(y_min[k]), x_max=float(x_max[k]), y_max=float(y_max[k]),
            x_centre=float(x_centre[k]), y_centre=float(y_centre[k]),
            class_name=class_names[int(detections.labels[k])], class_id=int(detections.labels[k]),
            score=float(detections.scores[k]), ra=float(ra[k]), dec=float(dec[k]),
        )
        for k in range(len(boxes))
    ]


def _write_rows(rows: Iterable, row_type: type, path: str | Path, format: str) -> Path:
    """Writes dataclass rows as a CSV or FITS table, one column per field, units from `row_type.UNITS`; replaces `path`."""
    if format not in ("csv", "fits"):
        raise ValueError(f'format must be "csv" or "fits", got {format!r}')
    rows = list(rows)
    fields = dataclasses.fields(row_type)
    table = Table(
        [np.array([getattr(row, f.name) for row in rows], dtype=_COLUMN_DTYPES[f.type]) for f in fields],
        names=[f.name for f in fields],
        units=row_type.UNITS,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "csv":
        table.write(path, format="ascii.csv", overwrite=True)
        return path
    with warnings.catch_warnings():
        # The FITS standard has no nanomaggy: a TUNIT of nmgy makes astropy's reader warn. As
        # Quantity columns, every unit is also written in astropy's table metadata in the header,
        # from which astropy reads nmgy back silently; other readers see the standard TUNITs.
        warnings.filterwarnings("ignore", message=".*could not be saved in native FITS format")
        QTable(table).write(path, format="fits", overwrite=True)
    return path


def write_catalogue(rows: Iterable[CatalogueRow], path: str | Path, *, format: str = "csv") -> Path:
    """Writes rows as a CSV or FITS binary table (with units), replacing any file at `path`.

    Args:
        rows: the catalogue rows.
        path: the output file.
        format: "csv" or "fits".

    Returns:
        The path written.
    """
    return _write_rows(rows, CatalogueRow, path, format)


def write_image_table(
    rows: Iterable[ImageStatusRow],
    path: str | Path,
    *,
    format: str = "csv",
    row_type: type[ImageStatusRow] = ImageStatusRow,
) -> Path:
    """Writes the image table (`row_type` columns) as CSV or FITS, replacing any file at `path`.

    Args:
        rows: one row per input image.
        path: the output file, by convention `image_table_path(catalogue_path)`.
        format: "csv" or "fits".
        row_type: `ImageStatusRow` or a subclass with more columns (a survey's `SurveyImageRow`).

    Returns:
        The path written.
    """
    return _write_rows(rows, row_type, path, format)


def image_table_path(catalogue_path: str | Path) -> Path:
    """Where the image table of a catalogue goes: `clumps.csv` -> `clumps.images.csv`."""
    catalogue_path = Path(catalogue_path)
    return catalogue_path.with_name(f"{catalogue_path.stem}.images{catalogue_path.suffix}")


def catalogue_format(path: str | Path, format: str | None = None) -> str:
    """The table format of an output file: `format` if given, else named by the suffix, else csv.

    Raises:
        ValueError: an unknown `format`, or one the file name contradicts (fits into `x.csv`).
    """
    suffix = Path(path).suffix.lower()
    named = next((name for name, suffixes in CATALOGUE_FORMATS.items() if suffix in suffixes), None)
    if format is None:
        return named or "csv"
    if format not in CATALOGUE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(CATALOGUE_FORMATS)}, got {format!r}")
    if named not in (None, format):
        raise ValueError(f"{Path(path).name} names a {named} file but the format is {format}: make them agree")
    return format


def _holds_image_data(path: Path) -> bool:
    """Whether an existing FITS file holds image data (a cutout), not only tables."""
    try:
        with fits.open(path, memmap=False) as hdul:
            return any(hdu.is_image and hdu.data is not None and hdu.data.size > 0 for hdu in hdul)
    except Exception:  # not FITS after all: no cutout to protect
        return False


def check_output_file(path: str | Path, *, inputs: Iterable[str | Path] = ()) -> Path:
    """Checks, before any work, that a table can be written at `path`; returns it as a Path.

    Missing parent folders are fine (the writers create them). A table never replaces a cutout:
    `path` may not be one of `inputs`, have a picture suffix (`images.PICTURE_SUFFIXES`), or be an
    existing FITS file with image data — the mistakes a shell glob in `--out *.png` makes.

    Raises:
        ValueError: `path` is a directory, an input or an image, a folder on the way is a file,
            or the file or its nearest existing folder is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give a file name, e.g. {path / 'clumps.csv'}")
    name = path.name.lower()
    if name.endswith(PICTURE_SUFFIXES):
        raise ValueError(f"{printable(path)} is an image name, not a table: give the catalogue a .csv or .fits name")
    resolved = path.resolve()
    if any(Path(p).resolve() == resolved for p in inputs):
        raise ValueError(f"{printable(path)} is one of the input images; writing the table there would destroy it")
    if path.exists() and name.endswith(FITS_SUFFIXES) and _holds_image_data(path):
        raise ValueError(f"{printable(path)} holds a FITS image, which a table would replace: give another name")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise ValueError(f"{path} is not writable")
        return path
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"cannot write {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: {folder} is not writable")
    return path


def printable(path: str | os.PathLike) -> str:
    """A path (or text holding one) as valid UTF-8: bytes that are not UTF-8 become `\\xNN`.

    Linux file names are bytes; Python keeps undecodable ones as lone surrogates, which no
    table writer or terminal accepts.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def galaxy_id(path: str | os.PathLike) -> str:
    """A cutout's galaxy id: its file name without the image (and `.gz`) suffix, `printable`;
    for files per band without the band placeholder and the separators beside it."""
    name = Path(printable(path)).name
    name = name[:-3] if name.lower().endswith(".gz") else name
    stem = Path(name).stem
    if BAND_PLACEHOLDER in stem:
        before, _, after = stem.partition(BAND_PLACEHOLDER)
        stem = (before.rstrip("_-.") + "_" + after.lstrip("_-.")).strip("_") or stem
    return stem


def _path_parts(path: str | os.PathLike) -> list[str]:
    # URLs (gs://, s3://) are kept as given; local paths are made absolute so that `a.png` and
    # `./a.png` are one file.
    path = os.fspath(path)
    return (path if "://" in path else os.path.abspath(path)).split("/" if "://" in path else os.sep)


def unique_galaxy_ids(paths: Sequence[str | os.PathLike]) -> list[str]:
    """One galaxy id per cutout path, all different, so rows of different files never merge.

    A file's id is its stem (`galaxy_id`) unless another path gives the same id; then each of
    those gets its path relative to the deepest folder they share, suffix kept: `good.png`,
    `good.jpg` and `sub/good.png` keep those names, while a lone `J0931+0203.fits` is
    `J0931+0203`.

    Args:
        paths: local paths or URLs, each file once.

    Returns:
        The ids, in the order of `paths`.

    Raises:
        ValueError: a file is listed twice.
    """
    parts = [_path_parts(printable(path)) for path in paths]
    ids = [galaxy_id(path) for path in paths]
    by_path: set[int] = set()
    while True:
        counts = collections.Counter(ids)
        colliding = {index for index, name in enumerate(ids) if counts[name] > 1}
        if colliding <= by_path:
            if colliding:
                raise ValueError(f"{paths[min(colliding)]} is listed twice")
            return ids
        # A path id can collide with another file's stem (`good.png` with `good.png.fits`):
        # those join the path-named set, until nothing collides.
        by_path |= colliding
        folders = [parts[index][:-1] for index in by_path]
        shared = 0
        while all(len(folder) > shared and folder[shared] == folders[0][shared] for folder in folders):
            shared += 1
        for index in by_path:
            ids[index] = "/".join(parts[index][shared:])


class Cutout(NamedTuple):
    """A cutout as `read_cutout` reads it.

    Attributes:
        image: uint8 [H, W, 3], top row first.
        wcs: celestial WCS (FITS with one), else None.
        n_bad_pixels: NaN or infinite FITS pixels, drawn black (`images.Image`).
    """

    image: np.ndarray
    wcs: WCS | None
    n_bad_pixels: int = 0


def read_cutout(path: str | Path) -> Cutout:
    """Reads a galaxy cutout as the builder does (`images.read_image`), with its celestial WCS.

    The whole cutout comes back (no crop): PNG/JPEG give no WCS; FITS g, r, i planes go
    through the same Lupton RGB mapping as the `clump_scout/sdss` training images and are
    flipped to top row first (see the module docstring).

    Raises:
        UnreadableImageError: the file is missing, unreadable, holds no usable image, or is
            smaller than `conventions.MIN_IMAGE_SIDE`.
    """
    image, header, n_bad_pixels = read_image(path)
    wcs = None if header is None else _as_wcs(header)
    return _sized_cutout(path, image, wcs, n_bad_pixels)


def _sized_cutout(path: str | Path, image: np.ndarray, wcs: WCS | None, n_bad_pixels: int) -> Cutout:
    """The `Cutout` of a picture, its WCS kept when celestial; an `UnreadableImageError` when too small."""
    height, width = image.shape[:2]
    if min(height, width) < conventions.MIN_IMAGE_SIDE:
        raise UnreadableImageError(
            f"{printable(Path(path).name)}: {width}x{height} px is too small to show a clump "
            f"(sides of at least {conventions.MIN_IMAGE_SIDE} px)"
        )
    return Cutout(image, wcs if wcs is not None and wcs.has_celestial else None, n_bad_pixels)


class ScienceImage(NamedTuple):
    """What the host and photometry steps measure a cutout on, in FITS' frame (bottom row first).

    Attributes:
        detection: float64 [H, W] image the host is segmented on: the bands' (FITS with named
            bands) or stored planes' (other FITS) `host.detection_image`, or the luminance
            (PNG/JPEG), its rows in FITS order (the RGB flipped), so (x, y) =
            `conventions.image_to_fits_pixels`.
        bands: the named bands (`bands.read_bands`) of a FITS cutout, or None.
        fwhm_px: the PSF FWHM the host is smoothed with, px: the r band's (else the bands'
            median) from the file, else `DEFAULT_FWHM_PX`.
        note: why there is no photometry ("" when `bands` is set).
    """

    detection: np.ndarray
    bands: BandImages | None
    fwhm_px: float
    note: str


def _fits_planes(path: Path, shape: tuple[int, int]) -> list[np.ndarray]:
    """A FITS cutout's stored 2-D planes (or a cube's) of `shape`, in any `gsfc_tf.bands` layout."""
    planes = [np.asarray(data, np.float64) for header, data in read_hdus(path) if psf_band(header) is None]
    return [p for plane in planes for p in (plane if plane.ndim == 3 else [plane]) if p.shape == shape]


def read_science(path: str | Path, image: np.ndarray, *, band_options: Mapping | None = None) -> ScienceImage:
    """The `ScienceImage` of a cutout that `read_cutout` read as `image` (uint8 [H, W, 3]).

    FITS whose image HDUs name their bands with zero points and PSF FWHMs (`gsfc_tf.bands`; what
    the headers lack from `band_options`, `bands.read_bands`' keyword arguments) give band images
    for photometry and their `host.detection_image` for the host; other FITS give their planes',
    PNG/JPEG their luminance (0.299 R + 0.587 G + 0.114 B), and no photometry.
    """
    return _science(path, image, *_named_bands(path, band_options))


def read_galaxy(path: str | Path, *, band_options: Mapping | None = None) -> tuple[Cutout, ScienceImage]:
    """`read_cutout` and `read_science` of a cutout, reading a FITS file with named bands once.

    Such a file's bands (`bands.read_bands`) make its picture as `read_image` does
    (`images.fits_picture` of g, r, i) and give its WCS (the file's: its first band's,
    `gsfc_tf.bands`); other cutouts, and files whose bands lack g, r or i or a finite pixel,
    are read by `read_cutout`, which says why one is unreadable. `band_options` as `read_science`.

    Raises:
        UnreadableImageError: as `read_cutout`.
    """
    bands, note = _named_bands(path, band_options)
    planes = [] if bands is None else [bands.images[band] for band in ("g", "r", "i") if band in bands.images]
    if len(planes) == 3 and np.logical_and.reduce([np.isfinite(plane) for plane in planes]).any():
        picture, n_bad_pixels = fits_picture(*planes)
        cutout = _sized_cutout(path, picture, bands.wcs, n_bad_pixels)
    else:
        cutout = read_cutout(path)
    return cutout, _science(path, cutout.image, bands, note)


def _named_bands(path: str | Path, band_options: Mapping | None) -> tuple[BandImages | None, str]:
    """(the FITS file's named bands, "") or (None, why there are none)."""
    if not Path(path).name.lower().endswith(FITS_SUFFIXES):
        return None, "no bands (PNG/JPEG)"
    try:
        return read_bands(path, **check_band_options(band_options)), ""
    except BandReadError as error:
        return None, str(error).split(": ", 1)[-1]


def _science(path: str | Path, image: np.ndarray, bands: BandImages | None, note: str) -> ScienceImage:
    """`read_science` of a cutout read as `image`, given its `_named_bands`."""
    if bands is None:
        rgb_luminance = (np.asarray(image, np.float64) @ np.array([0.299, 0.587, 0.114]))[::-1]
        planes = _fits_planes(Path(path), image.shape[:2]) if Path(path).name.lower().endswith(FITS_SUFFIXES) else []
        return ScienceImage(detection_image(planes) if planes else rgb_luminance, None, DEFAULT_FWHM_PX, note)
    fwhm = bands.reference_fwhm_px
    detection = detection_image(bands.images.values())
    if not any(band in PHOTOMETRY_BANDS for band in bands.images):
        return ScienceImage(detection, None, fwhm, f"no band of {', '.join(PHOTOMETRY_BANDS)}")
    return ScienceImage(detection, bands, fwhm, "")


class GalaxyRows(NamedTuple):
    """One galaxy's catalogue rows and its image-table host and photometry columns.

    Attributes:
        rows: one `CatalogueRow` per kept detection, in the detector's order.
        image_columns: `ImageStatusRow`'s host_* columns, n_off_host and photometry_note.
    """

    rows: list
    image_columns: dict


def _host_columns(host: Host | None, height: int, fwhm: float) -> dict:
    if host is None:
        return {"host_flag": "not_segmented"}
    x, y = conventions.fits_pixels_to_image(host.x, host.y, height=height)
    return {
        "host_flag": host.flag, "host_x": float(x), "host_y": float(y), "host_semi_major_axis": host.semi_major_axis,
        "host_axis_ratio": host.axis_ratio, "host_position_angle": host.position_angle,
        "host_half_light_radius": host.half_light_radius, "host_area": host.area, "host_fwhm": fwhm,
    }


def _photometry_columns(science: ScienceImage, host: Host | None, centres_fits, labels) -> list[dict]:
    """Per detection, its merged clump's photometry columns (`merge_detections`, `clump_photometry`)."""
    bands = science.bands
    names = [band for band in bands.images if band in PHOTOMETRY_BANDS]
    r_fwhm = bands.psf_fwhm_px.get("r", science.fwhm_px)
    merged, _, member_of = merge_detections(centres_fits, fwhm_px=r_fwhm, labels=labels)
    table = clump_photometry(
        {band: bands.images[band] for band in names}, merged,
        fwhm_px=bands.psf_fwhm_px, zero_point=bands.zero_points, gain=bands.gains, psf_images=bands.psf_images, host=host,
        resolved=PHOTOMETRY_RESOLVED,
        pixel_scale_arcsec=bands.pixel_scale_arcsec, wcs=bands.wcs,
    )
    columns = [f"{column}_{band}" for band in names for column, _ in _PER_BAND_COLUMNS]
    columns += [colour for colour in _COLOURS if colour in table.colnames]
    columns += ["size", "distance", "distance_arcsec", "distance_re", "is_clump_3pct", "is_clump_8pct"]
    per_clump = [
        {name: (bool(row[name]) if name.startswith("is_") else float(row[name]))
         for name in columns if name in table.colnames}
        for row in table
    ]
    return [{**per_clump[k], "merged_id": int(k)} for k in member_of]


def catalogue_galaxy(
    galaxy_id: str,
    detections: ImageBoxes,
    science: ScienceImage | None,
    *,
    wcs: WCS | None = None,
    min_score: float = 0.0,
    host_mask: str = DEFAULT_HOST_MASK,
    class_names: Sequence[str] = conventions.CLASS_NAMES,
) -> GalaxyRows:
    """One galaxy's catalogue rows with host and photometry columns: the composition of the science steps.

    1. `rows_from_detections` (boxes, classes, scores, RA/Dec) at `min_score`; with band images
       (the PSF FWHM known) each box's side is set from the PSF (`PSF_BOX_SIDES`), its position kept.
    2. Unless `host_mask` is "off", the host is segmented (`host.segment_host`) on
       `science.detection` at the cutout's centre (the centre of the model's crop, too) with
       `science.fwhm_px`; a detection whose centre is off the host's segment is `off_host`, and
       dropped when `host_mask` is "drop" (the default). A host not found flags the galaxy
       (`host_flag`) and puts every detection off it.
    3. With band images (`science.bands`), the kept detections are merged (`merge_detections`,
       the r band's FWHM) and measured (`clump_photometry`, `PHOTOMETRY_RESOLVED`); each row
       gets its merged clump's columns and `merged_id`.

    Args:
        galaxy_id: identifier written in every row.
        detections: `ImageBoxes` with scores, in pixels of the cutout.
        science: the cutout's `read_science`, or None for the detection columns only.
        wcs: the cutout's celestial WCS (from `read_cutout`), or None for NaN RA/Dec.
        min_score: the catalogue's operating threshold.
        host_mask: one of `HOST_MASK_MODES`.
        class_names: name of class id i is `class_names[i]`.

    Returns:
        `GalaxyRows`.
    """
    check_host_mask(host_mask)
    rows = rows_from_detections(galaxy_id, detections, wcs=wcs, class_names=class_names, min_score=min_score)
    if PSF_BOX_SIDES and science is not None and science.bands is not None and rows:
        # The box's side only: its position (x_centre, y_centre, RA/Dec) stays the detector's, also
        # where the image's edge clips the square.
        side = conventions.BOX_SIDE_PER_PSF_FWHM * science.fwhm_px
        boxes = np.array([[row.y_min, row.x_min, row.y_max, row.x_max] for row in rows])
        squares = conventions.boxes_with_side(boxes, side, image_hw=science.detection.shape)
        rows = [
            dataclasses.replace(row, y_min=float(y0), x_min=float(x0), y_max=float(y1), x_max=float(x1))
            for row, (y0, x0, y1, x1) in zip(rows, squares)
        ]
    if science is None:
        return GalaxyRows(rows, {})
    height = science.detection.shape[0]
    x, y = conventions.image_to_fits_pixels(
        np.array([row.x_centre for row in rows]), np.array([row.y_centre for row in rows]), height=height
    )
    host = None
    if host_mask != "off":
        host = segment_host(science.detection, fwhm_px=science.fwhm_px)  # under the cutout's centre
    off_host = ~host.contains(x, y) if host is not None else np.zeros(len(rows), bool)
    image_columns = {**_host_columns(host, height, science.fwhm_px), "n_off_host": int(off_host.sum()),
                     "photometry_note": science.note}
    flag = "not_segmented" if host is None else host.flag
    rows = [dataclasses.replace(row, host_flag=flag, off_host=bool(off)) for row, off in zip(rows, off_host)]
    if host_mask == "drop":
        keep = ~off_host
        rows, x, y = [row for row, k in zip(rows, keep) if k], x[keep], y[keep]
    if science.bands is not None and rows:
        labels = [row.class_id for row in rows]
        measured = _photometry_columns(science, host, np.stack([x, y], axis=1), labels)
        rows = [dataclasses.replace(row, **columns) for row, columns in zip(rows, measured)]
    return GalaxyRows(rows, image_columns)


def iter_cutouts(
    paths: Iterable[str | Path],
    *,
    on_error: Callable[[Path, UnreadableImageError], None] | None = None,
    band_options: Mapping | None = None,
) -> Iterator[tuple[Path, Cutout, ScienceImage]]:
    """Yields (path, `Cutout`, `ScienceImage`) of every readable cutout (`read_galaxy`), reporting and
    skipping the rest.

    Args:
        paths: cutout files.
        on_error: called with the path and error of each unreadable file; default logs a
            warning.
        band_options: `bands.read_bands`' keyword arguments, for what FITS headers lack.
    """
    for path in map(Path, paths):
        try:
            cutout, science = read_galaxy(path, band_options=band_options)
        except UnreadableImageError as error:
            if on_error is None:
                _LOG.warning("skipping unreadable cutout %s", error)
            else:
                on_error(path, error)
            continue
        yield path, cutout, science


def is_glob_pattern(pattern: str) -> bool:
    """Whether `pattern` holds a glob character (`*`, `?`, `[`); anything else names one path."""
    return bool(_GLOB_CHARACTERS & set(pattern))


def _directories_once(top: str) -> Iterator[str]:
    """`top` and every folder below it that is not hidden, each real folder once.

    Folder links are followed (a survey may link its parts together), but a folder reached
    again — through a link loop or a second link — is not entered twice.
    """
    seen: set[str] = set()
    stack = [top]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder or ".")
        if real in seen:
            continue
        seen.add(real)
        yield folder
        try:
            with os.scandir(folder or ".") as entries:
                names = [entry.name for entry in entries if not entry.name.startswith(".") and entry.is_dir()]
        except OSError:  # unreadable or vanished folder: nothing below it to match
            continue
        stack.extend(os.path.join(folder, name) for name in sorted(names, reverse=True))


def _glob(pattern: str) -> list[str]:
    """`glob.glob(pattern, recursive=True)`, but a `**` never walks a folder twice (link loops end).

    Python's own `**` follows folder links without end: a link to a parent folder repeats every
    file below it once per level, up to the system's link limit.
    """
    parts = pattern.split(os.sep)
    if "**" not in parts:
        return glob.glob(pattern)
    k = parts.index("**")
    head, rest = os.sep.join(parts[:k]) or (os.sep if k else ""), parts[k + 1 :] or ["*"]
    matches = []
    for base in glob.glob(head) if is_glob_pattern(head) else [head]:
        for folder in _directories_once(base):
            matches += _glob(os.path.join(glob.escape(folder), *rest))
    return matches


def _galaxies_of_band_files(pattern: str) -> list[str]:
    """The galaxy paths (holding `BAND_PLACEHOLDER`) of the files per band a glob pattern matches.

    The placeholder must sit in the file name, with no glob character after it:
    `cutouts/*_{band}.fits` matches `cutouts/J1234_r.fits` and gives `cutouts/J1234_{band}.fits`.
    """
    folder, name = os.path.split(pattern)
    before, placeholder, after = name.partition(BAND_PLACEHOLDER)
    if BAND_PLACEHOLDER in folder or not placeholder or is_glob_pattern(after) or BAND_PLACEHOLDER in after:
        raise ValueError(
            f"{pattern}: {BAND_PLACEHOLDER} must appear once, in the file name, with no wildcard after it"
        )
    galaxies = set()
    for band in KNOWN_BANDS:
        for match in _glob(pattern.replace(BAND_PLACEHOLDER, band)):
            match_folder, match_name = os.path.split(match)
            stem = match_name[: len(match_name) - len(after)]
            galaxies.add(os.path.join(match_folder, stem[: len(stem) - len(band)] + BAND_PLACEHOLDER + after))
    return sorted(galaxies)


def expand_image_paths(patterns: Iterable[str]) -> list[Path]:
    """Expands glob patterns (sorted matches); plain paths and patterns matching nothing stay as given.

    The one matcher of `predict` and `survey` (local paths): Python's `glob` rules, with `**`
    for any depth of folders (`**/*.png` finds `a.png` and `sub/deeper/b.png`), each folder
    walked once however many links lead to it. Keeping unmatched names lets `iter_cutouts`
    report them as unreadable instead of silently dropping them. A file named twice (two
    overlapping patterns, `a.png` and `./a.png`, a link to it) is kept once, where it first
    appears: it is one galaxy. A pattern holding `bands.BAND_PLACEHOLDER` in its file name
    (`cutouts/*_{band}.fits`) finds galaxies with one file per band: each is one path holding the
    placeholder (`cutouts/J1234_{band}.fits`), read by `bands.read_bands`.

    Raises:
        ValueError: a placeholder outside the file name or followed by a wildcard.
    """
    paths, seen = [], set()
    for pattern in patterns:
        if BAND_PLACEHOLDER in pattern:
            matches = _galaxies_of_band_files(pattern) if is_glob_pattern(pattern) else []
        else:
            matches = sorted(set(_glob(pattern))) if is_glob_pattern(pattern) else []
        for path in [Path(p) for p in matches] or [Path(pattern)]:
            file = path.resolve()
            if file not in seen:
                seen.add(file)
                paths.append(path)
    return paths


@dataclasses.dataclass(frozen=True)
class PredictionResult:
    """Catalogue rows of every readable cutout, and what became of every input (input order).

    Attributes:
        rows: one `CatalogueRow` per clump scoring at least the minimum score.
        images: one `ImageStatusRow` per input, the image table.
    """

    rows: list[CatalogueRow]
    images: list[ImageStatusRow]

    @property
    def processed(self) -> list[Path]:
        """The cutouts that were run."""
        return [Path(image.path) for image in self.images if image.status != "unreadable"]

    @property
    def skipped(self) -> list[tuple[Path, str]]:
        """(path, reason) for each unreadable input."""
        return [(Path(image.path), image.reason) for image in self.images if image.status == "unreadable"]

    @property
    def with_bad_pixels(self) -> list[ImageStatusRow]:
        """The read inputs with NaN or infinite pixels (drawn black for the detector)."""
        return [image for image in self.images if image.n_bad_pixels]


def image_status(
    galaxy: str,
    path: str | os.PathLike,
    *,
    reason: str | None = None,
    n_clumps: int = 0,
    n_bad_pixels: int = 0,
    science_columns: dict | None = None,
) -> ImageStatusRow:
    """The image-table row of one input: unreadable for a `reason`, else by its clump count.

    Path and reason are made `printable`, so an input with a non-UTF-8 name still has a row.
    `science_columns` are the host and photometry columns (`GalaxyRows.image_columns`).
    """
    if reason is not None:
        return ImageStatusRow(galaxy, printable(path), "unreadable", reason=printable(reason))
    status = "detected" if n_clumps else "no_clumps"
    return ImageStatusRow(
        galaxy, printable(path), status, n_clumps=n_clumps, n_bad_pixels=n_bad_pixels, **(science_columns or {})
    )


def predict_catalogue(
    detector: Detector,
    paths: Iterable[str | Path],
    *,
    min_score: float,
    batch_size: int = 8,
    on_error: Callable[[Path, UnreadableImageError], None] | None = None,
    progress: bool = False,
    host_mask: str = DEFAULT_HOST_MASK,
    band_options: Mapping | None = None,
) -> PredictionResult:
    """Finds clumps in cutout files and turns them into catalogue rows with host and photometry columns.

    Cutouts are batched with others of the same size; boxes are pixels of each original
    cutout; RA/Dec come from the cutout's celestial WCS (FITS) and are NaN otherwise. Each
    galaxy's rows are made by `catalogue_galaxy` on its science image (`read_galaxy`).

    Args:
        detector: a `gsfc_tf.detector.Detector`.
        paths: PNG/JPEG/FITS cutouts, each once; galaxy ids are `unique_galaxy_ids(paths)`.
        min_score: keep detections scoring at least this.
        batch_size: images per detector call.
        on_error: called with (path, error) of each unreadable input, after it is recorded.
        progress: show a tqdm bar over inputs.
        host_mask: one of `HOST_MASK_MODES` (`catalogue_galaxy`).
        band_options: `bands.read_bands`' keyword arguments: zero points, PSF FWHMs, pixel scale
            and gains for FITS bands whose headers lack them (`bands.BAND_OPTIONS`).
    """
    check_host_mask(host_mask)
    band_options = check_band_options(band_options)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    paths = [Path(p) for p in paths]
    ids = unique_galaxy_ids(paths)
    index_of = {path: index for index, path in enumerate(paths)}
    unreadable: dict[int, str] = {}

    def record(path: Path, error: UnreadableImageError) -> None:
        unreadable[index_of[path]] = str(error)
        if on_error is not None:
            on_error(path, error)

    galaxies: dict[int, GalaxyRows] = {}
    bad_pixels: dict[int, int] = {}
    # Cutouts waiting for a batch, by image shape: (input index, cutout, its science image).
    pending: dict[tuple[int, ...], list[tuple[int, Cutout, ScienceImage]]] = {}

    def flush(shape: tuple[int, ...]) -> None:
        group = pending.pop(shape)
        detections = detector.detect_boxes(np.stack([cutout.image for _, cutout, _ in group]))
        for (index, cutout, science), found in zip(group, detections):
            galaxies[index] = catalogue_galaxy(
                ids[index], found, science, wcs=cutout.wcs, min_score=min_score, host_mask=host_mask
            )
            bad_pixels[index] = cutout.n_bad_pixels

    cutouts = iter_cutouts(
        tqdm(paths, desc="predict", unit="image", disable=not progress), on_error=record, band_options=band_options
    )
    for path, cutout, science in cutouts:
        group = pending.setdefault(cutout.image.shape, [])
        group.append((index_of[path], cutout, science))
        if len(group) == batch_size:
            flush(cutout.image.shape)
    for shape in list(pending):
        flush(shape)
    rows_by_input = {index: galaxy.rows for index, galaxy in galaxies.items()}
    images = [
        image_status(
            ids[index], path, reason=unreadable.get(index), n_clumps=len(rows_by_input.get(index, [])),
            n_bad_pixels=bad_pixels.get(index, 0),
            science_columns=galaxies[index].image_columns if index in galaxies else None,
        )
        for index, path in enumerate(paths)
    ]
    rows = [row for index in range(len(paths)) for row in rows_by_input.get(index, [])]
    return PredictionResult(rows=rows, images=images)
