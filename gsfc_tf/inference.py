"""Inference: load a trained detector, run it on cutouts or a `clump_scout` split.

Shape shorthand: B images, H x W input images, S model input side, D detections.

Every `Detector` takes uint8 images as read (400x400 SDSS cutouts, 200x200 crops or any other
size) and returns boxes in pixels of those input images: the Keras path centre-crops and
resizes with `data.model_inputs` exactly as the training data was made and maps the S-frame
boxes back (`boxes / scale + offset`); an exported SavedModel does the same inside its graph.
So evaluation scores boxes in the 200-px crop frame (completeness-by-size bins are crop
pixels, like the Clump Scout statistics) and catalogues give pixels of the original cutout.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import math
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from gsfc_tf import data, evaluation, plots
from gsfc_tf.catalogue import (
    CatalogueRow,
    ImageStatusRow,
    UnreadableImageError,
    galaxy_id,
    iter_cutouts,
    rows_from_detections,
    unique_galaxy_ids,
)
from gsfc_tf.tta import DEFAULT_TTA_MERGE, TTA_MERGES, detect_dihedral

__all__ = [
    "DEFAULT_DATASET",
    "DEFAULT_MIN_SCORE",
    "Detector",
    "Evaluation",
    "PredictionResult",
    "default_min_score",
    "evaluate_examples",
    "evaluation_figures",
    "expand_image_paths",
    "format_summary",
    "galaxy_id",
    "headline",
    "load_detector",
    "load_keras_model",
    "OUTPUT_KEYS",
    "point_at_threshold",
    "predict_catalogue",
    "run_dataset",
    "unique_galaxy_ids",
    "validation_threshold",
    "write_evaluation",
]

OUTPUT_KEYS = ("boxes", "scores", "classes", "num_detections")
# Used by `predict` when the run has no validation operating point to offer.
DEFAULT_MIN_SCORE = 0.5
DEFAULT_DATASET = "clump_scout/synthetic"
_GLOB_CHARACTERS = frozenset("*?[")

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Detector:
    """A loaded detector: uint8 images in, detections in input-image pixels out.

    Attributes:
        detect_fn: uint8 [B, H, W, 3] tensor -> mapping with at least `OUTPUT_KEYS`: `boxes`
            float32 [B, D, 4] yxyx px of the input images, `scores` [B, D], `classes` [B, D]
            (0 clump, 1 odd_clump), `num_detections` [B]; rows past `num_detections` are padding.
        source: where it was loaded from (for messages).
        run_dir: the training run directory, when the model came from one.
        operating_threshold: the run's validation operating threshold as recorded in an exported
            SavedModel (a model from a run directory leaves it None: `validation_threshold` reads
            the run's `validation.json`).
        tta: whether detections are merged over the 8 dihedral views, which changes their scores.
    """

    detect_fn: Callable[[tf.Tensor], Mapping[str, tf.Tensor]]
    source: str
    run_dir: Path | None = None
    operating_threshold: float | None = None
    tta: bool = False
    # Input sizes already warned about by `detect`: one warning per size, not per batch.
    _oversized_warned: set[tuple[int, int]] = dataclasses.field(default_factory=set, init=False, repr=False, compare=False)

    @classmethod
    def from_model(
        cls,
        model,
        *,
        image_size: int | None = None,
        source: str = "model",
        run_dir: Path | None = None,
        tta: bool = False,
        tta_merge: str = DEFAULT_TTA_MERGE,
    ):
        """Wraps a Keras detector that maps float32 [B, S, S, 3] in [0, 1] to S-frame outputs.

        Args:
            model: callable `model(images, training=False)` returning `OUTPUT_KEYS`, with a
                `detector_config` (its post-processing settings drive the TTA merge).
            image_size: S; default `model.detector_config.image_size`.
            source: description for messages.
            run_dir: the run directory it came from, if any.
            tta: dihedral test-time augmentation (`gsfc_tf.tta`): the model runs on the 8
                flips/rotations of each image (8x the compute) and their detections are merged.
            tta_merge: `"wbf"` (weighted box fusion) or `"nms"`; see `gsfc_tf.tta`.

        Raises:
            ValueError: an unknown `tta_merge`.
        """
        config = model.detector_config
        size = int(image_size or config.image_size)
        if tta_merge not in TTA_MERGES:
            raise ValueError(f"tta_merge must be one of {', '.join(TTA_MERGES)}, got {tta_merge!r}.")

        def detect_inputs(inputs):
            if not tta:
                return model(inputs, training=False)
            return detect_dihedral(
                lambda views: model(views, training=False),
                inputs,
                merge=tta_merge,
                nms_iou=config.nms_iou,
                agnostic_nms_iou=config.agnostic_nms_iou,
                containment_threshold=config.containment_threshold,
                max_detections=config.max_detections,
            )

        # One trace serves every input size and batch: model_inputs resizes to static S.
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
        def detect(images):
            inputs, offset, scale = data.model_inputs(images, image_size=size)
            outputs = detect_inputs(inputs)
            boxes_yxyx = outputs["boxes"] / tf.tile(scale, [2]) + tf.tile(offset, [2])
            valid = tf.range(tf.shape(boxes_yxyx)[1])[tf.newaxis] < outputs["num_detections"][:, tf.newaxis]
            # Padding rows stay zero, as the postprocess layer leaves them.
            return {**outputs, "boxes": tf.where(valid[..., tf.newaxis], boxes_yxyx, 0.0)}

        return cls(detect_fn=detect, source=source, run_dir=run_dir, tta=tta)

    def detect(self, images) -> dict[str, np.ndarray]:
        """Runs the detector on one batch of same-sized images.

        Args:
            images: uint8 [B, H, W, 3].

        Returns:
            numpy `boxes` float32 [B, D, 4] (yxyx px of `images`), `scores` [B, D], `classes`
            [B, D], `num_detections` [B].
        """
        images = tf.convert_to_tensor(images)
        if images.dtype != tf.uint8 or images.shape.rank != 4 or images.shape[-1] != 3:
            raise ValueError(f"Expected uint8 images [B, H, W, 3], got {images.dtype.name} {images.shape}.")
        self._warn_if_oversized(*images.shape[1:3])
        outputs = self.detect_fn(images)
        return {key: np.asarray(outputs[key]) for key in OUTPUT_KEYS}

    def _warn_if_oversized(self, height: int, width: int) -> None:
        """Warns once per size about images the detector would see at a much smaller scale.

        Anything but a `CUTOUT_SIZE` cutout is taken whole as the `CROP_SIZE` view the model was
        trained on (`data.model_inputs`), so a 4000-px field is shrunk 20x and its clumps vanish.
        We warn rather than tile: tiling would also need a rule for clumps cut by tile edges.
        """
        if max(height, width) <= data.CUTOUT_SIZE or (height, width) in self._oversized_warned:
            return
        self._oversized_warned.add((height, width))
        log.warning(
            "%dx%d px input is %.3gx the %d-px training cutout and is shrunk as a whole to the detector's "
            "%d-px view, so its clumps look %.3gx smaller than in training and will be missed; predict does "
            "not tile: cut it into %d-px cutouts first.",
            height, width, max(height, width) / data.CUTOUT_SIZE, data.CUTOUT_SIZE, data.CROP_SIZE,
            max(height, width) / data.CROP_SIZE, data.CUTOUT_SIZE,
        )

    def detect_boxes(self, images) -> list[evaluation.ImageBoxes]:
        """`detect`, split into one `ImageBoxes` (with scores, input pixels) per image."""
        return evaluation.from_padded_batch(**self.detect(images))


def load_detector(path: str | Path, *, tta: bool = False, tta_merge: str = DEFAULT_TTA_MERGE) -> Detector:
    """Loads a detector from a run directory, a `.keras` file or a SavedModel directory.

    Args:
        path: a training run directory (holding `model.keras`), a `.keras` file, or a
            SavedModel written by `gsfc-tf export`: its version directory (holding
            `saved_model.pb`) or the TF Serving base directory (its highest version is used).
        tta, tta_merge: dihedral test-time augmentation, as `Detector.from_model`; Keras
            models only (a SavedModel has it built in when exported with `--tta`).

    Raises:
        FileNotFoundError: `path` is none of these.
        ValueError: `tta` for a SavedModel.
    """
    path = Path(path)
    if (path / "saved_model.pb").is_file() or any(path.glob("[0-9]*/saved_model.pb")):
        if tta:
            raise ValueError(f"{path} is a SavedModel, whose graph is fixed: export the model with --tta instead.")
        from gsfc_tf.export import load_exported, read_metadata

        metadata = read_metadata(path)
        recorded = metadata.get("operating_threshold")
        return Detector(
            detect_fn=load_exported(path),
            source=str(path),
            operating_threshold=None if recorded is None else float(recorded),
            tta=bool(metadata.get("tta", False)),
        )
    if _keras_model_path(path) is None:
        raise FileNotFoundError(
            f"{path} is not a run directory (with model.keras), a .keras file or a SavedModel directory "
            "(with saved_model.pb)."
        )
    model, model_path = load_keras_model(path)
    run_dir = model_path.parent if (model_path.parent / "config.json").is_file() else None
    return Detector.from_model(model, source=str(model_path), run_dir=run_dir, tta=tta, tta_merge=tta_merge)


def _keras_model_path(path: Path) -> Path | None:
    """The run directory's `model.keras`, or `path` itself if it is a `.keras` file; None if neither exists."""
    model_path = path / "model.keras" if path.is_dir() else path
    return model_path if model_path.is_file() and model_path.suffix == ".keras" else None


def load_keras_model(path: str | Path):
    """Loads the Keras detector (uncompiled) of a run directory or a `.keras` file.

    Returns:
        (the `FasterRCNN`, the `.keras` file it came from).

    Raises:
        FileNotFoundError: `path` is neither a run directory with `model.keras` nor a `.keras` file.
        ValueError: the file is not a readable Keras model (truncated, corrupt weights, ...); one
            line naming the file and what is wrong.
    """
    model_path = _keras_model_path(Path(path))
    if model_path is None:
        raise FileNotFoundError(f"{path} is neither a run directory (with model.keras) nor a .keras file.")
    # Keras reports a file that is not a zip archive as "File not found".
    if not zipfile.is_zipfile(model_path):
        raise ValueError(f"{model_path} is not a Keras model: not a zip archive (truncated or corrupt?).")
    import keras

    import gsfc_tf.models  # noqa: F401  (registers FasterRCNN for deserialisation)

    try:
        model = keras.saving.load_model(model_path, compile=False)
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as error:
        reason = " ".join(str(error).split())
        raise ValueError(f"{model_path} is not a readable Keras model: {type(error).__name__}: {reason}") from None
    return model, model_path


def _run_file(run_dir: Path | None, name: str) -> dict[str, Any] | None:
    if run_dir is None or not (run_dir / name).is_file():
        return None
    return json.loads((run_dir / name).read_text())


def validation_threshold(detector: Detector) -> float | None:
    """The operating score threshold chosen on the run's validation split, if any.

    From the run's `validation.json`, or for an exported SavedModel the threshold recorded in its
    metadata by `gsfc-tf export`, so a run directory and its export give the same answer. None
    for a run's model under TTA: its validation threshold was chosen on scores without TTA.
    """
    if detector.run_dir is None:
        return detector.operating_threshold
    if detector.tta:
        return None
    validation = _run_file(detector.run_dir, "validation.json") or {}
    threshold = validation.get("operating_point", {}).get("threshold")
    return None if threshold is None else float(threshold)


def default_min_score(detector: Detector) -> float:
    """`validation_threshold`, else `DEFAULT_MIN_SCORE`.

    Raises:
        ValueError: a TTA detector without a threshold chosen under TTA; `DEFAULT_MIN_SCORE`
            would be a guess on a score scale that TTA changes.
    """
    threshold = validation_threshold(detector)
    if threshold is None and detector.tta:
        raise ValueError(
            f"{detector.source} with TTA has no operating threshold chosen under TTA; choose one with "
            "`gsfc-tf evaluate --tta --split validation` and pass it as --min-score."
        )
    return DEFAULT_MIN_SCORE if threshold is None else threshold


def run_dataset(detector: Detector) -> str:
    """The TFDS dataset the detector's run trained on (`config.json`), else `clump_scout/synthetic`."""
    return (_run_file(detector.run_dir, "config.json") or {}).get("dataset") or DEFAULT_DATASET


# --------------------------------------------------------------------------------------------
# Evaluation on a clump_scout split.


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
        fixed_threshold: also report `point_at_threshold` of it under `metrics["fixed_threshold"]`.
        progress: show a tqdm bar over batches.
        **metrics_options: passed to `evaluation.metrics_report`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None:
        examples = examples.take(limit)

    def unpack(example):
        _, boxes_yxyx, labels = data.from_tfds_example(example)
        objects = example["objects"]
        # Real galaxies have NaN; datasets before clump_scout 1.2.0 have no SNR at all.
        snr = objects["snr"] if "snr" in objects else tf.fill(tf.shape(labels), float("nan"))
        return example["image"], example["image/id"], boxes_yxyx, labels, snr

    batches = examples.map(unpack, num_parallel_calls=tf.data.AUTOTUNE).padded_batch(
        batch_size,
        padding_values=(
            tf.constant(0, tf.uint8), "", tf.constant(data.PADDING, tf.float32), data.PADDING, float("nan")
        ),
    )
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
        metrics["fixed_threshold"] = point_at_threshold(metrics, fixed_threshold)
    return Evaluation(metrics=metrics, ids=ids, truths=truths, predictions=predictions, images=images)


def point_at_threshold(metrics: Mapping[str, Any], threshold: float) -> dict[str, float | None]:
    """Class-agnostic completeness and purity at the first curve threshold >= `threshold`.

    Args:
        metrics: an `evaluation.evaluate_detections` / `metrics_report` result.
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


# --------------------------------------------------------------------------------------------
# Catalogues of cutouts.


def expand_image_paths(patterns: Iterable[str]) -> list[Path]:
    """Expands glob patterns (sorted matches); plain paths and patterns matching nothing stay as given.

    Keeping unmatched names lets `iter_cutouts` report them as unreadable instead of silently
    dropping them. A file named twice (two overlapping patterns, `a.png` and `./a.png`) is kept
    once, where it first appears: it is one galaxy.
    """
    paths, seen = [], set()
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if _GLOB_CHARACTERS & set(pattern) else []
        for path in [Path(p) for p in matches] or [Path(pattern)]:
            if path.absolute() not in seen:
                seen.add(path.absolute())
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


def predict_catalogue(
    detector: Detector,
    paths: Iterable[str | Path],
    *,
    min_score: float,
    batch_size: int = 8,
    on_error: Callable[[Path, UnreadableImageError], None] | None = None,
    progress: bool = False,
) -> PredictionResult:
    """Finds clumps in cutout files and turns them into catalogue rows.

    Cutouts are batched with others of the same size; boxes are pixels of each original
    cutout; RA/Dec come from the cutout's celestial WCS (FITS) and are NaN otherwise.

    Args:
        paths: PNG/JPEG/FITS cutouts, each once; galaxy ids are `unique_galaxy_ids(paths)`.
        min_score: keep detections scoring at least this.
        batch_size: images per detector call.
        on_error: called with (path, error) of each unreadable input, after it is recorded.
        progress: show a tqdm bar over inputs.
    """
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

    rows_by_input: dict[int, list[CatalogueRow]] = {}
    pending: dict[tuple[int, ...], list[tuple[int, np.ndarray, Any]]] = {}

    def flush(shape: tuple[int, ...]) -> None:
        group = pending.pop(shape)
        detections = detector.detect_boxes(np.stack([image for _, image, _ in group]))
        for (index, _, wcs), found in zip(group, detections):
            rows_by_input[index] = rows_from_detections(ids[index], found, wcs=wcs, min_score=min_score)

    cutouts = iter_cutouts(tqdm(paths, desc="predict", unit="image", disable=not progress), on_error=record)
    for path, image, wcs in cutouts:
        group = pending.setdefault(image.shape, [])
        group.append((index_of[path], image, wcs))
        if len(group) == batch_size:
            flush(image.shape)
    for shape in list(pending):
        flush(shape)
    images = []
    for index, path in enumerate(paths):
        if index in unreadable:
            images.append(ImageStatusRow(ids[index], str(path), "unreadable", reason=unreadable[index]))
        else:
            found = len(rows_by_input[index])
            images.append(ImageStatusRow(ids[index], str(path), "detected" if found else "no_clumps", n_clumps=found))
    rows = [row for index in range(len(paths)) for row in rows_by_input.get(index, [])]
    return PredictionResult(rows=rows, images=images)


def format_summary(result: PredictionResult) -> str:
    """One line: galaxies processed, clumps found, inputs skipped."""
    galaxies = sum(image.status == "detected" for image in result.images)
    return (
        f"{len(result.rows)} clumps in {galaxies} of {len(result.processed)} galaxies; "
        f"{len(result.skipped)} unreadable input{'s' if len(result.skipped) != 1 else ''} skipped"
    )


def headline(metrics: Mapping[str, Any]) -> str:
    """One line: completeness and purity at the operating threshold, and COCO AP50."""

    def number(value: float | None) -> str:
        return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"

    threshold = metrics["operating_point"]["threshold"]
    line = (
        f"completeness {number(metrics['completeness'])}, purity {number(metrics['purity'])} "
        + ("(no operating point)" if threshold is None else f"at score >= {threshold:.2f}")
    )
    if "coco" in metrics:
        line += f"; AP50 {number(metrics['coco']['AP50'])}"
    if "fixed_threshold" in metrics:
        fixed = metrics["fixed_threshold"]
        line += (
            f"; at the validation threshold {fixed['threshold']:.2f}: completeness {number(fixed['completeness'])}, "
            f"purity {number(fixed['purity'])}"
        )
    return line
