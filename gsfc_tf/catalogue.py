"""Clump catalogues: read cutouts (PNG/JPEG/FITS), turn detections into rows, write CSV or FITS.

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

import dataclasses
import logging
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from gsfc_tf.evaluation import CLASS_NAMES, ImageBoxes
from tfds_clumpscout.clump_scout.preparation import PreparationRules, UnreadableImageError, read_image

__all__ = [
    "CatalogueRow",
    "UnreadableImageError",
    "iter_cutouts",
    "pixel_to_world",
    "read_cutout",
    "rows_from_detections",
    "write_catalogue",
]

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CatalogueRow:
    """One detected clump. Pixel columns are image coordinates of the original cutout (px)."""

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


_COLUMN_DTYPES = {"galaxy_id": str, "class_name": str, "class_id": np.int64}
_PIXEL_COLUMNS = ("x_min", "y_min", "x_max", "y_max", "x_centre", "y_centre")
_COLUMN_UNITS = {"ra": u.deg, "dec": u.deg, **{name: u.pix for name in _PIXEL_COLUMNS}}


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
    x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
    ra, dec = wcs.all_pix2world(x - 0.5, image_height - 0.5 - y, 0)
    return np.asarray(ra), np.asarray(dec)


def rows_from_detections(
    galaxy_id: str,
    detections: ImageBoxes,
    *,
    wcs: WCS | None = None,
    offset_xy: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
    class_names: Sequence[str] = CLASS_NAMES,
) -> list[CatalogueRow]:
    """Catalogue rows for one galaxy's detections.

    The detector may see a crop or a resized copy of the cutout: a detector pixel coordinate p
    maps to p * scale + offset in the cutout (e.g. offset (100, 100) for the central 200x200
    crop of a 400x400 cutout).

    Args:
        galaxy_id: identifier written in every row.
        detections: `ImageBoxes` with scores, in detector pixels.
        wcs: the cutout's celestial WCS (from `read_cutout`), or None for NaN RA/Dec.
        offset_xy: (x, y) of the detector image's top-left corner in the cutout, px.
        scale: cutout pixels per detector pixel.
        class_names: name of class id i is `class_names[i]`.

    Returns:
        One `CatalogueRow` per detection, in input order.
    """
    if detections.scores is None:
        raise ValueError("detections need scores")
    boxes = detections.boxes_yxyx * scale + np.array([offset_xy[1], offset_xy[0]] * 2)
    y_min, x_min, y_max, x_max = boxes.T
    x_centre, y_centre = (x_min + x_max) / 2, (y_min + y_max) / 2
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


def write_catalogue(rows: Iterable[CatalogueRow], path: str | Path, *, format: str = "csv") -> Path:
    """Writes rows as a CSV or FITS binary table (with units), replacing any file at `path`.

    Args:
        rows: the catalogue rows.
        path: the output file.
        format: "csv" or "fits".

    Returns:
        The path written.
    """
    if format not in ("csv", "fits"):
        raise ValueError(f'format must be "csv" or "fits", got {format!r}')
    rows = list(rows)
    names = [field.name for field in dataclasses.fields(CatalogueRow)]
    table = Table(
        [
            np.array([getattr(row, name) for row in rows], dtype=_COLUMN_DTYPES.get(name, np.float64))
            for name in names
        ],
        names=names,
        units=_COLUMN_UNITS,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.write(path, format="ascii.csv" if format == "csv" else "fits", overwrite=True)
    return path


def read_cutout(path: str | Path, *, rules: PreparationRules = PreparationRules()) -> tuple[np.ndarray, WCS | None]:
    """Reads a galaxy cutout as the builder does (`preparation.read_image`), with its celestial WCS.

    The whole cutout comes back (no crop): PNG/JPEG give no WCS; FITS g, r, i planes go
    through the same Lupton RGB mapping as the `clump_scout/sdss` training images and are
    flipped to top row first (see the module docstring).

    Returns:
        (image uint8 [H, W, 3], celestial WCS or None).

    Raises:
        UnreadableImageError: the file is missing, unreadable or holds no usable image.
    """
    image, header = read_image(path, rules)
    if header is None:
        return image, None
    wcs = _as_wcs(header)
    return image, (wcs if wcs.has_celestial else None)


def iter_cutouts(
    paths: Iterable[str | Path],
    *,
    on_error: Callable[[Path, UnreadableImageError], None] | None = None,
    **read_options,
) -> Iterator[tuple[Path, np.ndarray, WCS | None]]:
    """Yields (path, image, wcs) for every readable cutout, reporting and skipping the rest.

    Args:
        paths: cutout files.
        on_error: called with the path and error of each unreadable file; default logs a
            warning.
        **read_options: passed to `read_cutout`.
    """
    for path in map(Path, paths):
        try:
            image, wcs = read_cutout(path, **read_options)
        except UnreadableImageError as error:
            if on_error is None:
                _LOG.warning("skipping unreadable cutout %s", error)
            else:
                on_error(path, error)
            continue
        yield path, image, wcs
