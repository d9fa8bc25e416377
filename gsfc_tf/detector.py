"""Loading a trained detector: uint8 cutouts in, detections in pixels of those cutouts out.

Shape shorthand: B images, H x W input images, S model input side, D detections.

Every `Detector` takes uint8 images as read (400x400 SDSS cutouts, 200x200 crops or any other
size) and returns boxes in pixels of those input images: the Keras path centre-crops and
resizes with `data.model_inputs` exactly as the training data was made and maps the S-frame
boxes back (`boxes / scale + offset`); an exported SavedModel does the same inside its graph.
So evaluation scores boxes in the 200-px crop frame (completeness-by-size bins are crop
pixels, like the Clump Scout statistics) and catalogues give pixels of the original cutout.

`load_detector` reads a run directory, a `.keras` file or a SavedModel that `gsfc_tf.export`
wrote. The SavedModel's layout (signature names, `METADATA_PATH`) and its reading back
(`load_exported`, `read_metadata`) live here rather than in `export`, so that `export` can build
its serving functions from `Detector` without the two modules importing each other.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from gsfc_tf import conventions, data, evaluation
from gsfc_tf.ops.boxes import from_window, to_window
from gsfc_tf.tta import DEFAULT_TTA_MERGE, TTA_MERGES, detect_dihedral

__all__ = [
    "ALL_DETECTIONS_SIGNATURE",
    "BYTES_SIGNATURE",
    "DEFAULT_MIN_SCORE",
    "METADATA_PATH",
    "OUTPUT_KEYS",
    "TENSOR_SIGNATURE",
    "Detector",
    "default_min_score",
    "load_detector",
    "load_exported",
    "load_keras_model",
    "read_metadata",
    "run_dataset",
    "threshold_or_default",
    "validation_threshold",
]

OUTPUT_KEYS = ("boxes", "scores", "classes", "num_detections")
# The minimum score of a model without an operating threshold (`threshold_or_default`).
DEFAULT_MIN_SCORE = 0.5
# The exported SavedModel's signatures and metadata file (see `gsfc_tf.export`).
BYTES_SIGNATURE = "serving_default"
TENSOR_SIGNATURE = "serving_tensor"
ALL_DETECTIONS_SIGNATURE = "all_detections"
METADATA_PATH = Path("assets.extra") / "gsfc_tf.json"

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
        dataset: the TFDS dataset the model was trained on, as recorded in an exported SavedModel
            (a model from a run directory leaves it None: `run_dataset` reads the run's `config.json`).
    """

    detect_fn: Callable[[tf.Tensor], Mapping[str, tf.Tensor]]
    source: str
    run_dir: Path | None = None
    operating_threshold: float | None = None
    tta: bool = False
    dataset: str | None = None
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
            count = tf.shape(images)[0]
            # The backbone's batch normalisation fails on an empty batch ("Incompatible shapes"),
            # so an empty batch runs on one blank crop whose detections are then cut away.
            blank = tf.zeros([1, conventions.CROP_SIZE, conventions.CROP_SIZE, 3], tf.uint8)
            images = tf.cond(count > 0, lambda: images, lambda: blank)
            inputs, offset, scale = data.model_inputs(images, image_size=size)
            outputs = detect_inputs(inputs)
            boxes_yxyx = from_window(outputs["boxes"], scale_yx=scale, offset_yx=offset)
            valid = tf.range(tf.shape(boxes_yxyx)[1])[tf.newaxis] < outputs["num_detections"][:, tf.newaxis]
            # Padding rows stay zero, as the postprocess layer leaves them.
            outputs = {**outputs, "boxes": tf.where(valid[..., tf.newaxis], boxes_yxyx, 0.0)}
            return {key: value[:count] for key, value in outputs.items()}

        return cls(detect_fn=detect, source=source, run_dir=run_dir, tta=tta)

    def detect(self, images) -> dict[str, np.ndarray]:
        """Runs the detector on one batch of same-sized images.

        Args:
            images: uint8 [B, H, W, 3]; B may be 0.

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
        if max(height, width) <= conventions.CUTOUT_SIZE or (height, width) in self._oversized_warned:
            return
        self._oversized_warned.add((height, width))
        log.warning(
            "%dx%d px input is %.3gx the %d-px training cutout and is shrunk as a whole to the detector's "
            "%d-px view, so its clumps look %.3gx smaller than in training and will be missed; predict does "
            "not tile: cut it into %d-px cutouts first.",
            height, width, max(height, width) / conventions.CUTOUT_SIZE, conventions.CUTOUT_SIZE, conventions.CROP_SIZE,
            max(height, width) / conventions.CROP_SIZE, conventions.CUTOUT_SIZE,
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
        metadata = read_metadata(path)
        recorded = metadata.get("operating_threshold")
        return Detector(
            detect_fn=load_exported(path),
            source=str(path),
            operating_threshold=None if recorded is None else float(recorded),
            tta=bool(metadata.get("tta", False)),
            # Exports before gsfc-tf recorded the training dataset have none.
            dataset=metadata.get("dataset"),
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


def threshold_or_default(operating_threshold: float | None, *, tta: bool, source: str) -> float:
    """The minimum score a trained detector's detections are kept at unless a caller chooses one.

    One rule for every consumer: `predict` and `survey` (through `default_min_score`) and the
    thresholded signatures of an export (`gsfc_tf.export`), so a run and its export keep the same clumps.

    Args:
        operating_threshold: the score threshold chosen on the run's validation split
            (`conventions.operating_index`), on scores under TTA when `tta`; None if there is none.
        tta: whether the detector merges the 8 dihedral views, which changes its scores.
        source: the model, for the message.

    Returns:
        `operating_threshold`, else `DEFAULT_MIN_SCORE`.

    Raises:
        ValueError: no operating threshold under TTA; `DEFAULT_MIN_SCORE` would be a guess on a
            score scale that TTA changes.
    """
    if operating_threshold is not None:
        return float(operating_threshold)
    if tta:
        raise ValueError(
            f"{source} with TTA has no operating threshold chosen under TTA; choose one with "
            "`gsfc-tf evaluate --tta --split validation` and pass it with --min-score."
        )
    return DEFAULT_MIN_SCORE


def default_min_score(detector: Detector) -> float:
    """`threshold_or_default` of the detector's `validation_threshold`.

    Raises:
        ValueError: a TTA detector without a threshold chosen under TTA.
    """
    return threshold_or_default(validation_threshold(detector), tta=detector.tta, source=detector.source)


def run_dataset(detector: Detector) -> str | None:
    """The TFDS dataset the detector was trained on: its run's `config.json`, else its export's metadata.

    None where neither records it (a `.keras` file outside its run directory, an older export):
    no default is guessed, as scoring a model on another dataset than its own is silently wrong.
    """
    return (_run_file(detector.run_dir, "config.json") or {}).get("dataset") or detector.dataset


def run_validation_split(detector: Detector) -> tuple[str, str, int | None] | None:
    """(dataset, split, first-N size) the detector's run validated on (`config.json`), or None without one."""
    run_config = _run_file(detector.run_dir, "config.json") or {}
    if not run_config.get("validation_split"):
        return None
    return run_dataset(detector), run_config["validation_split"], run_config.get("validation_size")


# --------------------------------------------------------------------------------------------
# An exported SavedModel, read back.


def _version_dir(path: Path) -> Path:
    """`path` if it holds `saved_model.pb`, else its highest integer version subdirectory."""
    if (path / "saved_model.pb").is_file():
        return path
    versions = [p for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()] if path.is_dir() else []
    if not versions:
        raise FileNotFoundError(f"{path} holds no SavedModel (saved_model.pb) nor integer version directories with one.")
    return max(versions, key=lambda p: int(p.name))


def read_metadata(path: str | Path) -> dict:
    """The export's `assets.extra/gsfc_tf.json` (a version or base directory, as `load_exported`)."""
    return json.loads((_version_dir(Path(path)) / METADATA_PATH).read_text())


def load_exported(path: str | Path) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """Loads an export for use like the in-memory detector (via its `all_detections` signature).

    Args:
        path: a version directory, or the base directory (its highest version is used).

    Returns:
        A function of uint8 images [B, H, W, 3] (numpy or tensor, one size) returning tensors
        `boxes` float32 [B, D, 4] (yxyx pixels of the input images), `scores` float32 [B, D],
        `classes` int32 [B, D] (0 clump, 1 odd_clump) and `num_detections` int32 [B]; slots
        past `num_detections` are 0, as in `FasterRCNN` outputs. Its `saved_model` attribute
        is the loaded SavedModel (for its `signatures`).
    """
    version_dir = _version_dir(Path(path))
    loaded = tf.saved_model.load(str(version_dir))
    if ALL_DETECTIONS_SIGNATURE not in loaded.signatures:
        raise ValueError(
            f"{version_dir} has no {ALL_DETECTIONS_SIGNATURE!r} signature (an export from an older gsfc-tf); "
            "export the run again with `gsfc-tf export`."
        )
    # Every detection, not only those above the operating threshold: `evaluate` draws whole curves.
    serve = loaded.signatures[ALL_DETECTIONS_SIGNATURE]

    def detect(images) -> dict[str, tf.Tensor]:
        images = tf.convert_to_tensor(images)
        if images.dtype != tf.uint8 or images.shape.rank != 4 or images.shape[-1] != 3:
            raise ValueError(f"Expected uint8 images [B, H, W, 3], got {images.dtype.name} {images.shape}.")
        outputs = serve(images=images)
        height_width = tf.cast(tf.shape(images)[1:3], tf.float32)
        classes = outputs["detection_classes"]
        return {
            "boxes": to_window(outputs["detection_boxes"], scale_yx=height_width),
            "scores": outputs["detection_scores"],
            "classes": tf.where(classes > conventions.BACKGROUND_CLASS, conventions.from_model_class(classes), 0),
            "num_detections": outputs["num_detections"],
        }

    # The signature's variables live as long as the loaded object.
    detect.saved_model = loaded
    return detect
