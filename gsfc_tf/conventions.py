"""The project's conventions, each defined once: numpy only, no TensorFlow.

Everything that must agree between the TFDS builder, the input pipeline, the model, evaluation,
catalogues and the export reads it here; the graph versions of the box functions are in
`gsfc_tf.ops.boxes` and follow the same definitions.

Shape shorthand: K boxes, M and N box counts of a pair of sets, T score thresholds.

Classes:
    Dataset labels are 0 `clump` and 1 `odd_clump` (`CLASS_NAMES`); padding rows are
    `PADDING` (-1). The model's classifier puts background first, so its class ids are
    1-based: dataset label k is model class k + 1 (`to_model_class`, `from_model_class`).
    The same 1-based ids are the SavedModel's `detection_classes` (the TF Object Detection
    API's convention, 0 in padding slots), COCO's category ids and the `label` column (1|2)
    of the authors' crop catalogue.

Crop geometry:
    Clump Scout cutouts are `CUTOUT_SIZE` (400) px square; the model sees their central
    `CROP_SIZE` (200) px (Popp et al. 2024), at `crop_offset()` (100) px from the cutout's
    top-left corner; any other size is seen whole (`detector_window`). `PreparationRules` (the
    builder) and `data.model_inputs` (every detector path) take their defaults from here. An
    image with a side under `MIN_IMAGE_SIDE` (16) px is too small to show a clump (the Clump
    Scout boxes' median side is 16.6 px of the crop), so catalogues refuse it rather than
    magnify it to the model's view.

Box frames:
    Boxes are `yxyx` (`y_min, x_min, y_max, x_max`) in a frame named by the variable:
    absolute pixels of the image they travel with (inside the model and evaluation),
    normalised by that image's height and width (TFDS `BBoxFeature`, the SavedModel's
    outputs), or pixels of another image. Every change of frame is one window mapping: a
    window frame is a part of an outer image starting at `offset_yx` (outer pixels), magnified
    `scale_yx` times, so window p = (outer p - offset) * scale. `to_window` and `from_window`
    map boxes one way and back; for example
      - cutout -> crop: offset `crop_offset()`, scale 1;
      - input image -> model input: the offset and scale `data.model_inputs` returns;
      - normalised -> pixels: offset 0, scale (H, W) (pixels are a window on the unit square).
    `yxyx_to_xywh` and `box_centres_xy` give the forms the catalogue, COCO and matplotlib use.
    Image coordinates are continuous with the origin at the top-left corner and y down; a FITS
    array stores the bottom row first and astropy and photutils put the centre of its first
    stored pixel at (0, 0): `image_to_fits_pixels` and `fits_pixels_to_image` map between them.

IoU:
    IoU of two boxes is their intersection over their union, and 0 when the union is empty
    (two zero-area boxes). A pair with a padded box (every coordinate negative: `PADDING`
    rows) has IoU `PADDED_IOU` (-1), below any threshold, so padding never matches. Evaluation
    drops padding before matching, where the rule never applies; `pairwise_iou` is the numpy
    reference and `ops.box_iou` the graph op (tests compare them).

Operating point:
    The score threshold a detector is run at is the one on the validation curve that
    maximises min(completeness, purity) (ties: larger completeness + purity, then the lower
    threshold). Where both curves reach `OPERATING_TARGET` (the paper's 0.8) at some
    threshold, that point is among them; otherwise it is the balanced point where the curves
    cross. Training keeps the weights with the best `operating_score`, and an export records
    the threshold as the default of every consumer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "BACKGROUND_CLASS",
    "CLASS_NAMES",
    "CENTRE_MATCH_DISTANCE",
    "CROP_SIZE",
    "MIN_IMAGE_SIDE",
    "CUTOUT_SIZE",
    "OPERATING_TARGET",
    "PADDED_IOU",
    "PADDING",
    "box_centres_xy",
    "crop_offset",
    "detector_window",
    "fits_pixels_to_image",
    "from_model_class",
    "from_window",
    "image_to_fits_pixels",
    "operating_index",
    "operating_score",
    "pairwise_iou",
    "to_model_class",
    "to_window",
    "yxyx_to_xywh",
]

# --------------------------------------------------------------------------------------------
# Classes.

CLASS_NAMES = ("clump", "odd_clump")
# The model's class 0; also the SavedModel's `detection_classes` in padding slots.
BACKGROUND_CLASS = 0
# Padding rows of ground truth (boxes and labels) and of padded proposals.
PADDING = -1


def to_model_class(labels):
    """Model class ids (1-based, 0 background) of dataset labels (0-based); any array or number."""
    return labels + 1


def from_model_class(classes):
    """Dataset labels (0-based) of model class ids (1-based, 0 background); any array or number."""
    return classes - 1


# --------------------------------------------------------------------------------------------
# Crop geometry.

CUTOUT_SIZE = 400
CROP_SIZE = 200
MIN_IMAGE_SIDE = 16


def crop_offset(cutout_size: int = CUTOUT_SIZE, crop_size: int = CROP_SIZE) -> int:
    """Pixel offset (on both axes) of the central `crop_size` square in a `cutout_size` cutout."""
    return (cutout_size - crop_size) // 2


def detector_window(height: int, width: int) -> tuple[float, float, float, float]:
    """The part of an [H, W] input image a detector sees, yxyx px of that image.

    The central `CROP_SIZE` square of a `CUTOUT_SIZE` cutout, else the whole image, as
    `data.model_inputs` crops (tests compare the two).
    """
    if (height, width) == (CUTOUT_SIZE, CUTOUT_SIZE):
        offset = crop_offset()
        return (offset, offset, offset + CROP_SIZE, offset + CROP_SIZE)
    return (0, 0, height, width)


# --------------------------------------------------------------------------------------------
# Box frames.


def _per_coordinate(pair, dtype) -> np.ndarray:
    """A (y, x) pair (or one number for both) as the [4] factors of a yxyx box."""
    return np.tile(np.broadcast_to(np.asarray(pair, dtype), (2,)), 2)


def to_window(boxes_yxyx, *, scale_yx=1.0, offset_yx=None) -> np.ndarray:
    """Boxes of an outer frame in a window of it: (boxes - offset) * scale.

    Args:
        boxes_yxyx: [..., 4] boxes in the outer frame.
        scale_yx: window pixels per outer unit, (y, x) or one number.
        offset_yx: the window's top-left corner in the outer frame, (y, x) or one number;
            None for 0.

    Returns:
        [..., 4] boxes in the window frame, of the input's float dtype (float64 for integers).
    """
    boxes = np.asarray(boxes_yxyx)
    boxes = boxes if np.issubdtype(boxes.dtype, np.floating) else boxes.astype(np.float64)
    if offset_yx is not None:
        boxes = boxes - _per_coordinate(offset_yx, boxes.dtype)
    return boxes * _per_coordinate(scale_yx, boxes.dtype)


def from_window(boxes_yxyx, *, scale_yx=1.0, offset_yx=None) -> np.ndarray:
    """Inverse of `to_window`: boxes / scale + offset, in the outer frame."""
    boxes = np.asarray(boxes_yxyx)
    boxes = boxes if np.issubdtype(boxes.dtype, np.floating) else boxes.astype(np.float64)
    boxes = boxes / _per_coordinate(scale_yx, boxes.dtype)
    if offset_yx is not None:
        boxes = boxes + _per_coordinate(offset_yx, boxes.dtype)
    return boxes


def yxyx_to_xywh(boxes_yxyx) -> np.ndarray:
    """[..., 4] `(x_min, y_min, width, height)` boxes (COCO's `bbox`, matplotlib's Rectangle)."""
    boxes = np.asarray(boxes_yxyx)
    y_min, x_min, y_max, x_max = np.moveaxis(boxes, -1, 0)
    return np.stack([x_min, y_min, x_max - x_min, y_max - y_min], axis=-1)


def box_centres_xy(boxes_yxyx) -> np.ndarray:
    """[..., 2] `(x, y)` centres of [..., 4] yxyx boxes."""
    boxes = np.asarray(boxes_yxyx)
    return (boxes[..., [1, 0]] + boxes[..., [3, 2]]) / 2


def boxes_with_side(boxes_yxyx, side, *, image_hw: tuple[int, int] | None = None) -> np.ndarray:
    """float64 [..., 4] square boxes of side `side` (scalar or [...]) on the centres of `boxes_yxyx`.

    Clipped to an image of (height, width) `image_hw` when given.
    """
    boxes = np.asarray(boxes_yxyx, np.float64)
    centres = (boxes[..., :2] + boxes[..., 2:]) / 2
    half = np.asarray(side, np.float64)[..., None] / 2
    squares = np.concatenate([centres - half, centres + half], axis=-1)
    if image_hw is not None:
        squares = np.clip(squares, 0.0, np.tile(np.asarray(image_hw, np.float64), 2))
    return squares


def image_to_fits_pixels(x, y, *, height: int) -> tuple[np.ndarray, np.ndarray]:
    """astropy's 0-based pixel coordinates, in the stored FITS array, of image coordinates.

    Args:
        x, y: [...] image coordinates (px, continuous, origin at the top-left corner, y down).
        height: rows H of the image.

    Returns:
        float64 (x_fits, y_fits) shaped like the broadcast inputs: x - 0.5 and H - 0.5 - y.
    """
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    return x - 0.5, height - 0.5 - y


def fits_pixels_to_image(x_fits, y_fits, *, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `image_to_fits_pixels`: image coordinates of FITS array pixel coordinates."""
    x_fits, y_fits = np.broadcast_arrays(np.asarray(x_fits, np.float64), np.asarray(y_fits, np.float64))
    return x_fits + 0.5, height - 0.5 - y_fits


# --------------------------------------------------------------------------------------------
# IoU and the centre match.

PADDED_IOU = -1.0
# Box centres at most this far apart (px of the 200-px crop) find the same clump, whatever the
# boxes' sides: about one SDSS r-band PSF FWHM (1.4″ at 0.396″/px is 3.5 px), the scale of the
# aperture photometry puts on a clump's centre. Reported beside IoU 0.5, the paper's rule.
CENTRE_MATCH_DISTANCE = 4.0
# The box side of a clump that looks like the PSF, in PSF FWHMs: the median Clump Scout box side
# (16.6 px of a 200-px crop) over the median SDSS r-band FWHM there (about 3.3 px). The generator's
# PSF box rule and the injected clumps of the selection function use it.
BOX_SIDE_PER_PSF_FWHM = 5.0


def pairwise_iou(boxes1_yxyx, boxes2_yxyx) -> np.ndarray:
    """IoU [M, N] of boxes [M, 4] with boxes [N, 4] (the rule in the module docstring).

    Returns:
        float64 [M, N]: intersection over union; 0 where the union is empty; `PADDED_IOU`
        where either box is padding (all coordinates negative).
    """
    a = np.asarray(boxes1_yxyx, np.float64).reshape(-1, 4)
    b = np.asarray(boxes2_yxyx, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=-1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=-1)
    union = area_a[:, None] + area_b[None, :] - intersection
    iou = np.divide(intersection, union, out=np.zeros_like(union), where=union > 0)
    padded = (a.max(axis=-1) < 0)[:, None] | (b.max(axis=-1) < 0)[None, :]
    return np.where(padded, PADDED_IOU, iou)


# --------------------------------------------------------------------------------------------
# Operating point.

# Completeness and purity the operating point aims for (Popp et al. 2024).
OPERATING_TARGET = 0.8


def operating_index(completeness, purity) -> int | None:
    """Index of the operating point on curves sampled at increasing score thresholds.

    Args:
        completeness: [T] completeness at each threshold; NaN throughout when there are no truths.
        purity: [T] purity at each threshold.

    Returns:
        The first index maximising min(completeness, purity), ties broken by the larger
        completeness + purity; None when every completeness is NaN.
    """
    completeness = np.asarray(completeness, np.float64)
    purity = np.asarray(purity, np.float64)
    balanced = np.minimum(completeness, purity)
    valid = np.flatnonzero(~np.isnan(balanced))
    if not len(valid):
        return None
    total = completeness + purity
    order = np.lexsort((valid, -total[valid], -balanced[valid]))
    return int(valid[order[0]])


def operating_score(metrics: Mapping[str, Any]) -> float:
    """min(completeness, purity) at the operating point; -inf when the split has no clumps.

    Args:
        metrics: an `evaluation.evaluate_detections` result (or its JSON form).
    """
    if metrics["completeness"] is None:
        return float("-inf")
    return min(metrics["completeness"], metrics["purity"])
