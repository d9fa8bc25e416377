"""Real galaxies for a qualitative check: crops of the Hubble deep field that scikit-image ships.

`skimage.data.hubble_deep_field()` is a 872 x 1000 colour image of the Hubble eXtreme Deep
Field, bundled inside the scikit-image wheel (no download). Its galaxies are not SDSS Clump
Scout targets, so it has no clump labels; two things are still measurable:

* crops around its largest galaxies, to look at what the detector finds on real light;
* background crops, with no source large enough to host a resolved clump, where every
  detection is false: `detections_per_crop` on them is a false-positive rate.

A deep field has no empty 200-px window (every one holds several faint galaxies), so
"background" means: no segmented source larger than `max_source_area` pixels.

scikit-image is a test and notebook extra, imported only when a function needs it.

Shape shorthand: H x W the field, S the crop side, C crops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from astropy.stats import sigma_clipped_stats

from gsfc_tf import conventions
from gsfc_tf.evaluation import ImageBoxes

__all__ = [
    "Crop",
    "background_crops",
    "detections_per_crop",
    "galaxy_crops",
    "hubble_deep_field",
    "segment_sources",
]


@dataclasses.dataclass(frozen=True)
class Crop:
    """A square crop of a larger image.

    Attributes:
        image: uint8 [S, S, 3].
        y0, x0: its top-left pixel in the larger image.
    """

    image: np.ndarray
    y0: int
    x0: int


def hubble_deep_field() -> np.ndarray:
    """uint8 [872, 1000, 3]: the Hubble eXtreme Deep Field image bundled with scikit-image."""
    try:
        from skimage import data
    except ImportError as error:
        raise ImportError("the Hubble deep field needs scikit-image: pip install scikit-image") from error
    return data.hubble_deep_field()


def segment_sources(image: np.ndarray, *, n_sigma: float = 5.0) -> np.ndarray:
    """Labels the sources of an image: pixels `n_sigma` above the sky, connected.

    The sky level and noise are sigma-clipped statistics of the mean of the three channels;
    a 3x3 opening removes isolated noise pixels before labelling.

    Args:
        image: uint8 [H, W, 3].
        n_sigma: detection threshold above the sky, in sky standard deviations.

    Returns:
        int [H, W]: 0 for sky, 1..K for the K sources.
    """
    from skimage import measure, morphology

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
    brightness = image.astype(np.float32).mean(axis=-1)
    _, sky, noise = sigma_clipped_stats(brightness, sigma=3.0)
    mask = morphology.opening(brightness > sky + n_sigma * noise, np.ones((3, 3), bool))
    return measure.label(mask, connectivity=2)


def _check_size(image: np.ndarray, size: int) -> None:
    if size < 1 or size > min(image.shape[:2]):
        raise ValueError(f"crop size must be in [1, {min(image.shape[:2])}] for an image {image.shape}, got {size}")


def galaxy_crops(image: np.ndarray, n: int, *, size: int = conventions.CROP_SIZE, n_sigma: float = 5.0) -> list[Crop]:
    """Crops centred on the `n` largest sources (by segmented area), as Clump Scout centres its galaxy.

    A source whose centre already lies in the central half of a chosen crop is skipped, so no
    galaxy is picked twice; crops near the border are shifted inside the image.

    Args:
        image: uint8 [H, W, 3].
        n: number of crops wanted.
        size: S, the crop side in pixels; default the Clump Scout crop's, the scale the
            detector was trained at.
        n_sigma: `segment_sources` threshold.

    Returns:
        Up to `n` `Crop`s, largest source first.
    """
    _check_size(image, size)
    labels = segment_sources(image, n_sigma=n_sigma)
    areas = np.bincount(labels.ravel())
    areas[0] = 0  # the sky
    height, width = labels.shape
    crops: list[Crop] = []
    for source in np.argsort(-areas, kind="stable"):
        if len(crops) == n or areas[source] == 0:
            break
        rows, columns = np.nonzero(labels == source)
        cy, cx = rows.mean(), columns.mean()
        if any(abs(cy - (c.y0 + size / 2)) < size / 4 and abs(cx - (c.x0 + size / 2)) < size / 4 for c in crops):
            continue
        y0 = int(np.clip(round(cy - size / 2), 0, height - size))
        x0 = int(np.clip(round(cx - size / 2), 0, width - size))
        crops.append(Crop(image[y0 : y0 + size, x0 : x0 + size], y0, x0))
    return crops


def background_crops(
    image: np.ndarray,
    n: int,
    *,
    size: int = conventions.CROP_SIZE,
    max_source_area: int = 200,
    n_sigma: float = 5.0,
    stride: int = 25,
) -> list[Crop]:
    """Non-overlapping crops whose every source is smaller than `max_source_area` pixels.

    Windows on a `stride` grid are ranked emptiest first (their largest source, then their
    source pixels) and taken greedily while they overlap no crop already taken.

    Args:
        image: uint8 [H, W, 3].
        n: number of crops wanted.
        size: S, the crop side in pixels.
        max_source_area: the largest source area (px, at `n_sigma`) a background crop may hold;
            200 px is a galaxy about 16 px across, the size of one Clump Scout clump box.
        n_sigma: `segment_sources` threshold.
        stride: step of the window grid, px.

    Returns:
        Up to `n` `Crop`s (fewer when the image has fewer such windows), emptiest first.
    """
    _check_size(image, size)
    labels = segment_sources(image, n_sigma=n_sigma)
    areas = np.bincount(labels.ravel())
    areas[0] = 0
    source_area = areas[labels]  # each pixel's source area, 0 on the sky
    height, width = labels.shape
    windows = []
    for y0 in range(0, height - size + 1, stride):
        for x0 in range(0, width - size + 1, stride):
            window = source_area[y0 : y0 + size, x0 : x0 + size]
            if window.max() < max_source_area:
                windows.append((int(window.max()), int(np.count_nonzero(window)), y0, x0))
    crops: list[Crop] = []
    for _, _, y0, x0 in sorted(windows):
        if len(crops) == n:
            break
        if all(abs(y0 - c.y0) >= size or abs(x0 - c.x0) >= size for c in crops):
            crops.append(Crop(image[y0 : y0 + size, x0 : x0 + size], y0, x0))
    return crops


def detections_per_crop(predictions: Sequence[ImageBoxes], min_score: float) -> float:
    """Mean number of detections scoring at least `min_score` per crop.

    On background crops, where every detection is false, this is the false-positive rate.

    Args:
        predictions: C `ImageBoxes` with scores, one per crop.
        min_score: the operating score threshold.
    """
    if not predictions:
        raise ValueError("no crops to count detections on")
    if any(p.scores is None for p in predictions):
        raise ValueError("every element of predictions needs scores")
    return float(np.mean([np.count_nonzero(p.scores >= min_score) for p in predictions]))
