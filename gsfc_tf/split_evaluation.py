"""Scoring a detector on a TFDS `clump_scout` split: metrics, plots and a one-line summary.

Shape shorthand: B images in a batch, H x W their size, N clumps of one galaxy, I galaxies.

The detector runs on the split's images as stored (the 200-px crops), so boxes, and the
completeness-by-size bins, are crop pixels like the Clump Scout statistics. The scoring itself
is `gsfc_tf.evaluation` (numpy, model-free); this module feeds it a detector's output.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from gsfc_tf import conventions, data, evaluation, plots
from gsfc_tf.detector import Detector, run_validation_split

__all__ = [
    "Evaluation",
    "evaluate_examples",
    "evaluation_figures",
    "headline",
    "tta_validation_threshold",
    "write_evaluation",
]


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """A detector scored on a split; boxes in pixels of the split's images (the 200-px crop).

    Attributes:
        metrics: `evaluation.metrics_report` result.
        ids: I galaxy ids.
        truths: I `ImageBoxes`.
        predictions: I `ImageBoxes` with scores.
        images: the first few uint8 images [H, W, 3], for `plot_detections_grid`.
    """

    metrics: dict[str, Any]
    ids: list[str]
    truths: list[evaluation.ImageBoxes]
    predictions: list[evaluation.ImageBoxes]
    images: list[np.ndarray]


def _unpack_example(example: Mapping[str, Any]) -> tuple[tf.Tensor, ...]:
    """(image uint8 [H, W, 3], id, boxes_yxyx [N, 4], labels [N], snr [N]) of one TFDS example."""
    _, boxes_yxyx, labels = data.from_tfds_example(example)
    objects = example["objects"]
    # Real galaxies have NaN; datasets before clump_scout 1.2.0 have no SNR at all.
    snr = objects["snr"] if "snr" in objects else tf.fill(tf.shape(labels), float("nan"))
    return example["image"], example["image/id"], boxes_yxyx, labels, snr


def _example_batches(examples: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """`_unpack_example` tuples padded into batches of B: boxes and labels padded with `conventions.PADDING`."""
    return examples.map(_unpack_example, num_parallel_calls=tf.data.AUTOTUNE).padded_batch(
        batch_size,
        padding_values=(
            tf.constant(0, tf.uint8), "", tf.constant(conventions.PADDING, tf.float32), conventions.PADDING, float("nan")
        ),
    )


def evaluate_examples(
    detector: Detector,
    examples: tf.data.Dataset,
    *,
    batch_size: int = 8,
    limit: int | None = None,
    keep_images: int = 16,
    fixed_threshold: float | None = None,
    progress: bool = True,
    **metrics_options,
) -> Evaluation:
    """Runs `detector` over TFDS `clump_scout` examples and scores it.

    The top-level completeness and purity are at the operating point chosen on these examples
    (`evaluation.evaluate_detections`); an operating threshold chosen beforehand on another
    split (the run's validation split) gives an unbiased figure: pass it as `fixed_threshold`.
    Where the examples carry clump SNRs (`objects/snr`, synthetic data), the metrics break
    completeness down by SNR too (`by_snr`).

    Args:
        examples: unbatched TFDS examples (`image` uint8 [H, W, 3], `image/id`, `objects`).
        batch_size: images per detector call.
        limit: score only the first `limit` galaxies.
        keep_images: how many images to keep for the detections grid.
        fixed_threshold: also report `evaluation.point_at_threshold` of it under
            `metrics["fixed_threshold"]`, with the centre match's under its `centre`.
        progress: show a tqdm bar over batches.
        **metrics_options: passed to `evaluation.metrics_report`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None:
        examples = examples.take(limit)
    batches = _example_batches(examples, batch_size)
    count = int(batches.cardinality())
    ids, truths, predictions, images, truth_snr = [], [], [], [], []
    for batch_images, batch_ids, boxes_yxyx, labels, snr in tqdm(
        batches.prefetch(1), total=count if count >= 0 else None, desc="evaluate", unit="batch", disable=not progress
    ):
        predictions += detector.detect_boxes(batch_images)
        truths += evaluation.from_padded_batch(boxes_yxyx.numpy(), labels.numpy())
        # The same rows `from_padded_batch` keeps: padding has label -1.
        truth_snr += [image_snr[image_labels >= 0] for image_snr, image_labels in zip(snr.numpy(), labels.numpy())]
        ids += [i.decode() for i in batch_ids.numpy()]
        images += list(batch_images.numpy()[: max(keep_images - len(images), 0)])
    if not truths:
        raise ValueError("the split holds no galaxies to evaluate")
    if any(np.isfinite(image_snr).any() for image_snr in truth_snr):
        metrics_options = {"truth_snr": truth_snr, **metrics_options}
    metrics = evaluation.metrics_report(truths, predictions, **metrics_options)
    if fixed_threshold is not None:
        metrics["fixed_threshold"] = evaluation.point_at_threshold(metrics, fixed_threshold)
        if "by_centre" in metrics:
            metrics["fixed_threshold"]["centre"] = evaluation.point_at_threshold(metrics["by_centre"], fixed_threshold)
    return Evaluation(metrics=metrics, ids=ids, truths=truths, predictions=predictions, images=images)


def tta_validation_threshold(
    detector: Detector, *, data_dir: str | None = None, manual_dir: str | None = None, progress: bool = True
) -> float | None:
    """The operating threshold of a run's model under TTA, chosen as training chose the plain one.

    TTA merges 8 views into new scores, so the run's `validation.json` threshold does not apply:
    this scores the run's own validation split (`config.json`) under TTA, 8x the model compute
    of a validation, and takes its operating point (`conventions.operating_index`).

    Args:
        detector: a TTA `Detector` of a run directory.
        data_dir, manual_dir: where TFDS finds (or builds) the run's dataset.
        progress: show a tqdm bar.

    Returns:
        The threshold, or None: no run directory, no validation split, or no operating point.

    Raises:
        ValueError: `detector` does not run TTA.
    """
    if not detector.tta:
        raise ValueError(f"{detector.source} does not run TTA: its validation threshold is `validation_threshold`'s.")
    split = run_validation_split(detector)
    if split is None:
        return None
    dataset, name, size = split
    examples = data.load_tfds_split(dataset, name, data_dir=data_dir, manual_dir=manual_dir)
    return evaluate_examples(detector, examples, limit=size, progress=progress).metrics["operating_point"]["threshold"]




def evaluation_figures(result: Evaluation) -> dict[str, Figure]:
    """The evaluation plots, keyed by file stem; `completeness_by_snr` where the truths had SNRs.

    The detections grid draws predictions scoring at least the fixed threshold when one was
    given (what `gsfc-tf predict` would catalogue), else the operating threshold.
    """
    chosen = result.metrics.get("fixed_threshold") or result.metrics["operating_point"]
    threshold = chosen["threshold"]
    n = len(result.images)
    return {
        "completeness_purity": plots.plot_completeness_purity(result.metrics),
        "detections": plots.plot_detections_grid(
            result.images,
            result.truths[:n],
            result.predictions[:n],
            titles=result.ids[:n],
            min_score=1.0 if threshold is None else threshold,
        ),
        "completeness_by_size": plots.plot_completeness_by_size(result.metrics),
        **(
            {"completeness_by_snr": plots.plot_completeness_by_snr(result.metrics)}
            if "by_snr" in result.metrics
            else {}
        ),
    }


def write_evaluation(result: Evaluation, out_dir: str | Path, *, dpi: int = 120) -> dict[str, Path]:
    """Writes `metrics.json` and the `evaluation_figures` as PNGs into `out_dir`; returns the paths."""
    out_dir = Path(out_dir)
    written = {"metrics": evaluation.write_metrics_json(result.metrics, out_dir / "metrics.json")}
    for name, figure in evaluation_figures(result).items():
        written[name] = out_dir / f"{name}.png"
        figure.savefig(written[name], dpi=dpi)
    return written


def headline(metrics: Mapping[str, Any]) -> str:
    """One line: completeness and purity at the operating threshold (IoU 0.5, then by centre), and COCO AP50."""

    def number(value: float | None) -> str:
        return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"

    def by_centre(point: Mapping[str, Any] | None) -> str:
        if point is None:
            return ""
        distance = metrics["by_centre"]["criterion"]["centre_distance"]
        return f" (centres <= {distance:g} px: {number(point['completeness'])} / {number(point['purity'])})"

    threshold = metrics["operating_point"]["threshold"]
    line = (
        f"completeness {number(metrics['completeness'])}, purity {number(metrics['purity'])} "
        + ("(no operating point)" if threshold is None else f"at score >= {threshold:.2f}")
        + by_centre(metrics.get("centre_at_operating_threshold"))
    )
    if "coco" in metrics:
        line += f"; AP50 {number(metrics['coco']['AP50'])}"
    if "fixed_threshold" in metrics:
        fixed = metrics["fixed_threshold"]
        line += (
            f"; at the validation threshold {fixed['threshold']:.2f}: completeness {number(fixed['completeness'])}, "
            f"purity {number(fixed['purity'])}" + by_centre(fixed.get("centre"))
        )
    return line
