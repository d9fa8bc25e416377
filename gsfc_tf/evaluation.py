"""Completeness, purity and COCO AP of clump detections: numpy only, model-free.

Scores any catalogue of predicted boxes against any truth, so it evaluates the detector, a
saved catalogue or another method alike.

Shape shorthand: N true boxes and M predicted boxes in one image; I images; T score thresholds.

Conventions:
    Boxes are absolute-pixel `yxyx` (`y_min, x_min, y_max, x_max`); labels are 0 `clump`,
    1 `odd_clump` (`conventions.CLASS_NAMES`); IoU is `conventions.pairwise_iou`.

    Matching is one-to-one and greedy by descending score (a stable sort: equal scores keep
    their input order). Each prediction in turn takes the still unmatched truth it is eligible
    for with the highest IoU (ties: the nearer centre, then the lower index). A pair is eligible
    when IoU >= `iou_threshold` or when the box centres are at most `centre_distance` px apart;
    either test may be switched off with None, not both. The default (IoU >= 0.5, no distance
    test) is COCO's AP50 rule, so completeness at score threshold 0 equals pycocotools' recall
    at IoU 0.5; `metrics_report` also reports IoU 0.3, kinder to 4-10 px clumps whose IoU
    drops fast with a one-pixel offset, and the centre match alone (centres within
    `conventions.CENTRE_MATCH_DISTANCE` px, any sides), which is what clump science uses: a
    detector that finds a clump but sizes its box by other rules than the labels' still
    counts there.

    Completeness = matched truths / truths and purity = matched predictions / predictions, over
    all images pooled. Class-agnostic (the headline): a truth counts as found by a box of either
    class. Per class: truths and predictions of that class only, so labels must agree.

    Where the misses are: completeness at the operating threshold by a per-truth property (box
    side always; signal-to-noise ratio when the truths carry one, as synthetic clumps do) is
    class-agnostic too, a truth counting as found by a box of either class, with one row for
    all truths and one per true class (`completeness_by_bins`).

    Empty denominators: purity is 1.0 where no prediction is made (no prediction is a false
    one; precision's convention at zero recall, which keeps the curve defined up to threshold
    1 and, since completeness is then 0, never makes such a threshold the operating point).
    Completeness without truths is NaN (null in JSON): an absent class is neither perfect nor
    failed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gsfc_tf import conventions

__all__ = [
    "DEFAULT_SCORE_THRESHOLDS",
    "DEFAULT_SIZE_BIN_EDGES",
    "DEFAULT_SNR_BIN_EDGES",
    "ImageBoxes",
    "coco_average_precision",
    "completeness_by_bins",
    "evaluate_detections",
    "from_padded_batch",
    "greedy_match",
    "metrics_report",
    "point_at_threshold",
    "write_metrics_json",
]

DEFAULT_SCORE_THRESHOLDS = tuple(i / 100 for i in range(101))
# Clump box sides run 4-48 px (median 16.6, 5-95% 9-28): narrow bins where most clumps are.
DEFAULT_SIZE_BIN_EDGES = (8.0, 12.0, 16.0, 20.0, 24.0, 32.0)
# Synthetic clumps' r-band SNR in their box: 5% below 3.6, median 15, 10% above 45; below 3 a
# clump is at the noise, above 20 a miss is the detector's fault.
DEFAULT_SNR_BIN_EDGES = (3.0, 5.0, 10.0, 20.0, 40.0)


@dataclasses.dataclass(frozen=True)
class ImageBoxes:
    """The boxes of one image: its truths (`scores` None) or its predictions.

    Attributes:
        boxes_yxyx: float64 [K, 4] absolute-pixel boxes.
        labels: int64 [K] class ids (0 clump, 1 odd_clump).
        scores: float64 [K] confidences, or None for truths.
    """

    boxes_yxyx: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None = None

    def __post_init__(self):
        boxes = np.asarray(self.boxes_yxyx, np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes_yxyx must be [K, 4], got shape {boxes.shape}")
        if np.any(boxes[:, 2:] < boxes[:, :2]):
            raise ValueError(f"boxes_yxyx need y_max >= y_min and x_max >= x_min, got {boxes}")
        labels = np.asarray(self.labels).reshape(-1).astype(np.int64)
        if labels.shape != (len(boxes),):
            raise ValueError(f"labels must be [{len(boxes)}], got shape {np.shape(self.labels)}")
        object.__setattr__(self, "boxes_yxyx", boxes)
        object.__setattr__(self, "labels", labels)
        if self.scores is not None:
            scores = np.asarray(self.scores, np.float64).reshape(-1)
            if scores.shape != (len(boxes),):
                raise ValueError(f"scores must be [{len(boxes)}], got shape {np.shape(self.scores)}")
            object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, keep: np.ndarray) -> ImageBoxes:
        """The boxes where boolean mask or index array `keep` [K] selects."""
        scores = None if self.scores is None else self.scores[keep]
        return ImageBoxes(self.boxes_yxyx[keep], self.labels[keep], scores)


def from_padded_batch(boxes, classes, scores=None, num_detections=None) -> list[ImageBoxes]:
    """Splits the padded batch form (the detector's outputs, padded truths) into images.

    `from_padded_batch(**detector_outputs)` works when the outputs are keyed `boxes`, `scores`,
    `classes`, `num_detections`. Any array-like (numpy, eager tensors) is accepted.

    Args:
        boxes: [B, K, 4] absolute-pixel yxyx boxes.
        classes: [B, K] dataset labels, 0 clump, 1 odd_clump.
        scores: [B, K] confidences, or None for truths.
        num_detections: [B] valid rows per image; None keeps the rows whose label is >= 0
            (padding is -1).

    Returns:
        B `ImageBoxes`.
    """
    boxes = np.asarray(boxes)
    classes = np.asarray(classes)
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or classes.shape != boxes.shape[:2]:
        raise ValueError(f"need boxes [B, K, 4] and classes [B, K], got {boxes.shape} and {classes.shape}")
    if scores is not None and np.shape(scores) != classes.shape:
        raise ValueError(f"scores must be {classes.shape}, got {np.shape(scores)}")
    if num_detections is not None and np.shape(num_detections) != classes.shape[:1]:
        raise ValueError(f"num_detections must be [{len(classes)}], got {np.shape(num_detections)}")
    labels = classes.astype(np.int64)
    images = []
    for b in range(len(boxes)):
        if num_detections is None:
            keep = labels[b] >= 0
        else:
            keep = np.arange(labels.shape[1]) < int(np.asarray(num_detections)[b])
        images.append(
            ImageBoxes(boxes[b][keep], labels[b][keep], None if scores is None else np.asarray(scores)[b][keep])
        )
    return images


def _check_criterion(iou_threshold: float | None, centre_distance: float | None) -> None:
    if iou_threshold is None and centre_distance is None:
        raise ValueError("set iou_threshold, centre_distance or both; got neither")
    if iou_threshold is not None and not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    if centre_distance is not None and centre_distance < 0:
        raise ValueError(f"centre_distance must be >= 0 px, got {centre_distance}")


def greedy_match(
    true_boxes_yxyx: np.ndarray,
    pred_boxes_yxyx: np.ndarray,
    pred_scores: np.ndarray,
    *,
    iou_threshold: float | None = 0.5,
    centre_distance: float | None = None,
) -> np.ndarray:
    """Matches predictions to truths one-to-one, greedily by descending score.

    Args:
        true_boxes_yxyx: [N, 4] absolute-pixel boxes.
        pred_boxes_yxyx: [M, 4] absolute-pixel boxes.
        pred_scores: [M] confidences.
        iou_threshold: a pair is eligible if IoU >= this (None: no IoU test).
        centre_distance: ... or if its centres are <= this many px apart (None: no distance test).

    Returns:
        int64 [M]: the index of the truth each prediction matched, -1 if none.
    """
    _check_criterion(iou_threshold, centre_distance)
    truths = np.asarray(true_boxes_yxyx, np.float64).reshape(-1, 4)
    preds = np.asarray(pred_boxes_yxyx, np.float64).reshape(-1, 4)
    scores = np.asarray(pred_scores, np.float64).reshape(-1)
    if scores.shape != (len(preds),):
        raise ValueError(f"pred_scores must be [{len(preds)}], got shape {np.shape(pred_scores)}")
    matched = np.full(len(preds), -1, np.int64)
    if len(preds) == 0 or len(truths) == 0:
        return matched
    iou = conventions.pairwise_iou(preds, truths)
    distance = np.linalg.norm(
        conventions.box_centres_xy(preds)[:, None] - conventions.box_centres_xy(truths)[None], axis=-1
    )
    eligible = np.zeros(iou.shape, bool)
    if iou_threshold is not None:
        eligible |= iou >= iou_threshold
    if centre_distance is not None:
        eligible |= distance <= centre_distance
    # Each prediction's truths in order of preference; lexsort is stable, so index breaks ties.
    preference = np.lexsort((distance, -iou), axis=-1)
    taken = np.zeros(len(truths), bool)
    for p in np.argsort(-scores, kind="stable"):
        ranked = preference[p]
        available = ranked[eligible[p, ranked] & ~taken[ranked]]
        if len(available):
            matched[p] = available[0]
            taken[available[0]] = True
    return matched


@dataclasses.dataclass(frozen=True)
class _Pooled:
    """Match results of one class selection over all images.

    pred_scores, pred_matched: [P] every prediction's score and whether it matched.
    true_match_scores: [G] for every truth the score of the prediction that matched it, or -inf.
    true_sides: [G] every truth's box side, sqrt(height * width), px.
    true_labels: [G] every truth's class id.
    """

    pred_scores: np.ndarray
    pred_matched: np.ndarray
    true_match_scores: np.ndarray
    true_sides: np.ndarray
    true_labels: np.ndarray


def _pool(truths: Sequence[ImageBoxes], predictions: Sequence[ImageBoxes], label: int | None, **criterion) -> _Pooled:
    parts = []
    for truth, pred in zip(truths, predictions):
        if label is not None:
            truth, pred = truth.select(truth.labels == label), pred.select(pred.labels == label)
        matched = greedy_match(truth.boxes_yxyx, pred.boxes_yxyx, pred.scores, **criterion)
        true_match_scores = np.full(len(truth), -np.inf)
        true_match_scores[matched[matched >= 0]] = pred.scores[matched >= 0]
        sizes = truth.boxes_yxyx[:, 2:] - truth.boxes_yxyx[:, :2]
        parts.append((pred.scores, matched >= 0, true_match_scores, np.sqrt(np.prod(sizes, axis=-1)), truth.labels))
    return _Pooled(*(np.concatenate(column) for column in zip(*parts)))


def _count_at_least(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each threshold [T], how many of `values` are >= it."""
    return len(values) - np.searchsorted(np.sort(values), thresholds, side="left")


def _curves(pooled: _Pooled, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    # Greedy matching in descending score order never lets a prediction see lower-scored ones,
    # so matching only the predictions scoring >= t equals matching all and dropping those
    # below t: one matching gives the whole curve (tests check this against re-matching).
    n_predicted = _count_at_least(pooled.pred_scores, thresholds)
    n_matched = _count_at_least(pooled.pred_scores[pooled.pred_matched], thresholds)
    n_true = len(pooled.true_match_scores)
    completeness = n_matched / n_true if n_true else np.full(len(thresholds), np.nan)
    purity = np.divide(n_matched, n_predicted, out=np.ones(len(thresholds)), where=n_predicted > 0)
    total = completeness + purity
    f1 = np.divide(2 * completeness * purity, total, out=np.zeros(len(thresholds)), where=total > 0)
    f1[np.isnan(total)] = np.nan
    return {
        "score_threshold": thresholds,
        "completeness": completeness,
        "purity": purity,
        "f1": f1,
        "n_predicted": n_predicted,
        "n_matched": n_matched,
    }


def _f1_best_index(f1: np.ndarray) -> int | None:
    """First (lowest-threshold) index maximising F1; None when F1 is NaN throughout."""
    return None if np.isnan(f1).all() else int(np.nanargmax(f1))


def _point(curves: Mapping[str, np.ndarray], index: int | None) -> dict[str, float | None]:
    """Threshold, completeness, purity and F1 at curve index `index` (all None for None)."""
    keys = {"threshold": "score_threshold", "completeness": "completeness", "purity": "purity", "f1": "f1"}
    return {name: None if index is None else float(curves[key][index]) for name, key in keys.items()}


def _listed(curves: Mapping[str, np.ndarray]) -> dict[str, list]:
    return {key: value.tolist() for key, value in curves.items()}


def _coerce(images: Sequence[ImageBoxes], what: str, need_scores: bool) -> list[ImageBoxes]:
    images = list(images)
    if not images:
        raise ValueError(f"{what} holds no images")
    for image in images:
        if not isinstance(image, ImageBoxes):
            raise ValueError(f"{what} must be a sequence of ImageBoxes, got an element of type {type(image)}")
        if need_scores and image.scores is None:
            raise ValueError(f"every element of {what} needs scores")
    return images


def evaluate_detections(
    truths: Sequence[ImageBoxes],
    predictions: Sequence[ImageBoxes],
    *,
    iou_threshold: float | None = 0.5,
    centre_distance: float | None = None,
    score_thresholds: Sequence[float] = DEFAULT_SCORE_THRESHOLDS,
    size_bin_edges: Sequence[float] = DEFAULT_SIZE_BIN_EDGES,
    truth_snr: Sequence[np.ndarray] | None = None,
    snr_bin_edges: Sequence[float] = DEFAULT_SNR_BIN_EDGES,
    target: float = conventions.OPERATING_TARGET,
    class_names: Sequence[str] = conventions.CLASS_NAMES,
) -> dict[str, Any]:
    """Completeness and purity, overall and per class, against the score threshold.

    The operating point is `conventions.operating_index` on the class-agnostic curves: where
    both curves reach `target` if any threshold does, otherwise the balanced point where they
    cross; `meets_target` says which. (Long only by its options and this docstring: the body is
    the short list of metrics it assembles from `_pool`, `_curves` and the helpers below.)

    Args:
        truths: I `ImageBoxes` without scores.
        predictions: I `ImageBoxes` with scores, image for image.
        iou_threshold: match if IoU >= this (None: no IoU test).
        centre_distance: match if the centres are <= this many px apart (None: no distance test).
        score_thresholds: [T] increasing thresholds for the curves; a prediction counts at t if
            its score >= t.
        size_bin_edges: increasing inner edges (px) of the box-side bins for completeness by
            size; the outer bins are open-ended.
        truth_snr: I arrays [N_i], each truth's signal-to-noise ratio (NaN where unknown), image
            for image; None: no `by_snr`.
        snr_bin_edges: increasing inner edges of the SNR bins, as `size_bin_edges`.
        target: completeness and purity the operating point aims for.
        class_names: name of class id i is `class_names[i]`.

    Returns:
        A JSON-serialisable dict (NaN where undefined): `completeness`, `purity` (class-agnostic,
        at the operating threshold), `operating_point`, `f1_best`, `curves`, `per_class`
        (each with `completeness`, `purity` at the operating threshold and its own `curves`),
        `by_size` and, with `truth_snr`, `by_snr` (`completeness_by_bins` of box side and SNR
        at the operating threshold), `criterion`, counts.
    """
    _check_criterion(iou_threshold, centre_distance)
    truths, predictions, thresholds = _checked_inputs(truths, predictions, score_thresholds, len(class_names))
    criterion = {"iou_threshold": iou_threshold, "centre_distance": centre_distance}

    pooled = _pool(truths, predictions, None, **criterion)
    curves = _curves(pooled, thresholds)
    operating_index = conventions.operating_index(curves["completeness"], curves["purity"])
    operating = _point(curves, operating_index)
    operating |= {
        "target": target,
        "meets_target": operating_index is not None and min(operating["completeness"], operating["purity"]) >= target,
    }
    per_class = {
        name: _class_metrics(truths, predictions, label, thresholds, operating_index, criterion)
        for label, name in enumerate(class_names)
    }
    binned = functools.partial(
        _binned_completeness,
        found=pooled.true_match_scores >= (np.inf if operating["threshold"] is None else operating["threshold"]),
        labels=pooled.true_labels,
        threshold=operating["threshold"],
        class_names=class_names,
    )
    by_snr = {}
    if truth_snr is not None:
        by_snr["by_snr"] = binned(_per_truth(truth_snr, truths, "truth_snr"), _bin_edges(snr_bin_edges, "snr_bin_edges"))
    return {
        "completeness": operating["completeness"],
        "purity": operating["purity"],
        "criterion": criterion,
        "class_names": list(class_names),
        "n_images": len(truths),
        "n_true": len(pooled.true_match_scores),
        "n_predicted": len(pooled.pred_scores),
        "operating_point": operating,
        "f1_best": _point(curves, _f1_best_index(curves["f1"])),
        "curves": _listed(curves),
        "per_class": per_class,
        "by_size": binned(pooled.true_sides, _bin_edges(size_bin_edges, "size_bin_edges")),
        **by_snr,
    }


def _checked_inputs(
    truths: Sequence[ImageBoxes], predictions: Sequence[ImageBoxes], score_thresholds: Sequence[float], num_classes: int
) -> tuple[list[ImageBoxes], list[ImageBoxes], np.ndarray]:
    """`evaluate_detections`' inputs checked: (truths, predictions, thresholds float64 [T])."""
    truths = _coerce(truths, "truths", need_scores=False)
    predictions = _coerce(predictions, "predictions", need_scores=True)
    if len(truths) != len(predictions):
        raise ValueError(f"need truths and predictions for the same images, got {len(truths)} and {len(predictions)}")
    thresholds = np.asarray(score_thresholds, np.float64)
    if thresholds.ndim != 1 or len(thresholds) == 0 or np.any(np.diff(thresholds) <= 0):
        raise ValueError(f"score_thresholds must be a non-empty increasing [T], got {thresholds}")
    for image in (*truths, *predictions):
        if np.any((image.labels < 0) | (image.labels >= num_classes)):
            raise ValueError(f"labels must be in [0, {num_classes}), got {image.labels}")
    return truths, predictions, thresholds


def _class_metrics(
    truths: Sequence[ImageBoxes],
    predictions: Sequence[ImageBoxes],
    label: int,
    thresholds: np.ndarray,
    operating_index: int | None,
    criterion: Mapping[str, float | None],
) -> dict[str, Any]:
    """One class's counts, curves and completeness/purity at the (class-agnostic) operating index."""
    class_curves = _curves(_pool(truths, predictions, label, **criterion), thresholds)
    at_operating = _point(class_curves, operating_index)
    return {
        "n_true": int(sum(np.count_nonzero(t.labels == label) for t in truths)),
        "n_predicted": int(sum(np.count_nonzero(p.labels == label) for p in predictions)),
        "completeness": at_operating["completeness"],
        "purity": at_operating["purity"],
        "curves": _listed(class_curves),
    }


def _bin_edges(edges: Sequence[float], name: str) -> np.ndarray:
    edges = np.asarray(edges, np.float64)
    if edges.ndim != 1 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"{name} must be increasing, got {edges}")
    return edges


def _per_truth(values: Sequence[np.ndarray], truths: Sequence[ImageBoxes], name: str) -> np.ndarray:
    """Concatenates I per-image arrays [N_i] in truth order, checking each against its image."""
    if len(values) != len(truths):
        raise ValueError(f"{name} needs one array per image ({len(truths)}), got {len(values)}")
    arrays = [np.asarray(v, np.float64).reshape(-1) for v in values]
    for i, (array, truth) in enumerate(zip(arrays, truths)):
        if len(array) != len(truth):
            raise ValueError(f"{name}[{i}] must have one value per truth ({len(truth)}), got {len(array)}")
    return np.concatenate(arrays) if arrays else np.zeros(0)


def _binned_completeness(
    values: np.ndarray,
    edges: np.ndarray,
    *,
    found: np.ndarray,
    labels: np.ndarray,
    threshold: float | None,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Completeness per bin of a per-truth value [G], for all truths and per true class.

    Truths whose value is NaN are in no bin; `n_unknown` counts them.
    """
    known = ~np.isnan(values)
    bins = np.digitize(values, edges)
    inner = [f"{lo:g}–{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]
    bin_labels = [f"<{edges[0]:g}", *inner, f"≥{edges[-1]:g}"] if len(edges) else ["all"]

    def row(selected: np.ndarray) -> dict[str, Any]:
        counted = selected & known
        n_true = np.bincount(bins[counted], minlength=len(bin_labels))
        n_matched = np.bincount(bins[counted], weights=found[counted], minlength=len(bin_labels)).astype(np.int64)
        completeness = np.divide(n_matched, n_true, out=np.full(len(bin_labels), np.nan), where=n_true > 0)
        return {
            "n_true": n_true.tolist(),
            "n_matched": n_matched.tolist(),
            "completeness": completeness.tolist(),
            "n_unknown": int(np.count_nonzero(selected & ~known)),
        }

    return {
        "threshold": threshold,
        "bin_edges": edges.tolist(),
        "labels": bin_labels,
        **row(np.ones(len(values), bool)),
        "per_class": {name: row(labels == label) for label, name in enumerate(class_names)},
    }


def completeness_by_bins(
    truths: Sequence[ImageBoxes],
    predictions: Sequence[ImageBoxes],
    truth_values: Sequence[np.ndarray],
    bin_edges: Sequence[float],
    *,
    score_threshold: float,
    iou_threshold: float | None = 0.5,
    centre_distance: float | None = None,
    class_names: Sequence[str] = conventions.CLASS_NAMES,
) -> dict[str, Any]:
    """Completeness against any per-truth property (SNR, contrast, size...), overall and per class.

    A truth counts as found when a prediction of either class scoring >= `score_threshold`
    matches it (class-agnostic greedy matching, as the headline completeness); the truths are
    then split by the bin of their value and by their own class.

    Args:
        truths: I `ImageBoxes` without scores.
        predictions: I `ImageBoxes` with scores, image for image.
        truth_values: I arrays [N_i], one value per truth of each image; NaN where unknown
            (left out of every bin and counted in `n_unknown`).
        bin_edges: increasing inner edges; the outer bins are open-ended.
        score_threshold: predictions scoring at least this count.
        iou_threshold, centre_distance: the match criterion, as in `evaluate_detections`.
        class_names: name of class id i is `class_names[i]`.

    Returns:
        `{"threshold", "bin_edges", "labels", "n_true", "n_matched", "completeness",
        "n_unknown", "per_class": {name: {"n_true", "n_matched", "completeness",
        "n_unknown"}}}`; the per-bin lists have len(bin_edges) + 1 entries, completeness NaN
        for an empty bin.
    """
    _check_criterion(iou_threshold, centre_distance)
    truths = _coerce(truths, "truths", need_scores=False)
    predictions = _coerce(predictions, "predictions", need_scores=True)
    if len(truths) != len(predictions):
        raise ValueError(f"need truths and predictions for the same images, got {len(truths)} and {len(predictions)}")
    values = _per_truth(truth_values, truths, "truth_values")
    pooled = _pool(truths, predictions, None, iou_threshold=iou_threshold, centre_distance=centre_distance)
    return _binned_completeness(
        values,
        _bin_edges(bin_edges, "bin_edges"),
        found=pooled.true_match_scores >= score_threshold,
        labels=pooled.true_labels,
        threshold=float(score_threshold),
        class_names=class_names,
    )


def _coco_dataset(images: Sequence[ImageBoxes], class_names: Sequence[str], with_scores: bool):
    from pycocotools.coco import COCO

    annotations = []
    for image_id, image in enumerate(images, start=1):
        boxes_xywh = conventions.yxyx_to_xywh(image.boxes_yxyx)
        for k in range(len(image)):
            annotation = {
                "id": len(annotations) + 1,  # COCOeval treats id 0 as "unmatched"
                "image_id": image_id,
                "category_id": int(conventions.to_model_class(image.labels[k])),
                "bbox": [float(v) for v in boxes_xywh[k]],
                "area": float(boxes_xywh[k, 2] * boxes_xywh[k, 3]),
                "iscrowd": 0,
            }
            if with_scores:
                annotation["score"] = float(image.scores[k])
            annotations.append(annotation)
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i} for i in range(1, len(images) + 1)],
        "categories": [{"id": conventions.to_model_class(c), "name": name} for c, name in enumerate(class_names)],
        "annotations": annotations,
    }
    coco.createIndex()
    return coco


def _nan_mean(values: np.ndarray) -> float:
    values = values[values > -1]
    return float(values.mean()) if values.size else math.nan


def coco_average_precision(
    truths: Sequence[ImageBoxes],
    predictions: Sequence[ImageBoxes],
    *,
    class_names: Sequence[str] = conventions.CLASS_NAMES,
) -> dict[str, Any]:
    """COCO box AP50 and AP@[.5:.95] from pycocotools, per class, averaged and class-agnostic.

    COCO keeps at most `maxDets` predictions per image; it is raised to the most predictions
    any image has, so every prediction counts as it does in `evaluate_detections`.

    Args:
        truths: I `ImageBoxes` without scores.
        predictions: I `ImageBoxes` with scores.
        class_names: name of class id i is `class_names[i]`.

    Returns:
        `{"AP50", "AP", "per_class": {name: {"AP50", "AP", "recall50"}}, "class_agnostic":
        {...}}`; the top-level values are COCO's mean over classes that have truths; NaN where
        a class has no truths. `recall50` is COCO's recall at IoU 0.5.
    """
    try:
        from pycocotools.cocoeval import COCOeval
    except ImportError as error:
        raise ImportError("COCO AP needs pycocotools: pip install pycocotools") from error
    truths = _coerce(truths, "truths", need_scores=False)
    predictions = _coerce(predictions, "predictions", need_scores=True)
    if len(truths) != len(predictions):
        raise ValueError(f"need truths and predictions for the same images, got {len(truths)} and {len(predictions)}")
    max_detections = max([100, *(len(p) for p in predictions)])
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_truths = _coco_dataset(truths, class_names, with_scores=False)
        coco_predictions = _coco_dataset(predictions, class_names, with_scores=True)

    def run(use_categories: bool) -> tuple[np.ndarray, np.ndarray]:
        evaluator = COCOeval(coco_truths, coco_predictions, "bbox")
        evaluator.params.maxDets = [1, 10, max_detections]
        evaluator.params.useCats = int(use_categories)
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.evaluate()
            evaluator.accumulate()
        # precision [T iou, R recall, K class, A area, M maxDets]; area "all", the largest maxDets.
        return evaluator.eval["precision"][..., 0, -1], evaluator.eval["recall"][..., 0, -1]

    def summary(precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
        return {"AP50": _nan_mean(precision[0]), "AP": _nan_mean(precision), "recall50": _nan_mean(recall[:1])}

    precision, recall = run(use_categories=True)
    per_class = {name: summary(precision[:, :, k], recall[:, k]) for k, name in enumerate(class_names)}
    return {
        "AP50": _nan_mean(precision[0]),
        "AP": _nan_mean(precision),
        "per_class": per_class,
        "class_agnostic": summary(*(array[..., 0] for array in run(use_categories=False))),
    }


def point_at_threshold(metrics: Mapping[str, Any], threshold: float) -> dict[str, float | None]:
    """Class-agnostic completeness and purity at the first curve threshold >= `threshold`.

    Args:
        metrics: an `evaluate_detections` / `metrics_report` result.
        threshold: a score threshold; the default curve grid steps by 0.01.
    """
    thresholds = np.asarray(metrics["curves"]["score_threshold"], float)
    index = int(np.searchsorted(thresholds, threshold - 1e-9))
    if index == len(thresholds):
        raise ValueError(f"threshold {threshold} is above the last curve threshold {thresholds[-1]}")
    return {
        "threshold": float(thresholds[index]),
        **{key: metrics["curves"][key][index] for key in ("completeness", "purity", "n_predicted", "n_matched")},
    }


def metrics_report(
    truths: Sequence[ImageBoxes],
    predictions: Sequence[ImageBoxes],
    *,
    iou_thresholds: Sequence[float] = (0.5, 0.3),
    centre_distance: float | None = None,
    centre_match_distance: float | None = conventions.CENTRE_MATCH_DISTANCE,
    coco: bool = True,
    class_names: Sequence[str] = conventions.CLASS_NAMES,
    **kwargs,
) -> dict[str, Any]:
    """Everything `gsfc-tf evaluate` writes to metrics.json.

    Args:
        truths: I `ImageBoxes` without scores.
        predictions: I `ImageBoxes` with scores.
        iou_thresholds: the first gives the top-level metrics; each one gets its full
            `evaluate_detections` result under `by_iou_threshold["0.3"]` etc.
        centre_distance: passed to `evaluate_detections` with every IoU threshold.
        centre_match_distance: the centre match alone (no IoU test) gets its full
            `evaluate_detections` result under `by_centre`, and its completeness and purity at
            the top-level operating threshold under `centre_at_operating_threshold`; None: neither.
        coco: add `coco_average_precision` under `coco` (needs pycocotools).
        class_names: name of class id i is `class_names[i]`.
        **kwargs: more `evaluate_detections` options.

    Returns:
        `evaluate_detections(..., iou_threshold=iou_thresholds[0])` plus `by_iou_threshold`,
        `by_centre`, `centre_at_operating_threshold` and `coco`.
    """
    if not iou_thresholds:
        raise ValueError("need at least one IoU threshold")
    by_iou = {
        f"{t:g}": evaluate_detections(
            truths, predictions, iou_threshold=t, centre_distance=centre_distance, class_names=class_names, **kwargs
        )
        for t in iou_thresholds
    }
    report = dict(by_iou[f"{iou_thresholds[0]:g}"])
    report["by_iou_threshold"] = by_iou
    if centre_match_distance is not None:
        by_centre = evaluate_detections(
            truths, predictions, iou_threshold=None, centre_distance=centre_match_distance,
            class_names=class_names, **kwargs,
        )
        report["by_centre"] = by_centre
        threshold = report["operating_point"]["threshold"]
        report["centre_at_operating_threshold"] = None if threshold is None else point_at_threshold(by_centre, threshold)
    if coco:
        report["coco"] = coco_average_precision(truths, predictions, class_names=class_names)
    return report


def _json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    return value


def write_metrics_json(metrics: Mapping[str, Any], path: str | Path) -> Path:
    """Writes `metrics` as strict JSON (NaN and infinities become null); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_ready(metrics), indent=2, allow_nan=False, ensure_ascii=False) + "\n")
    return path
