"""SavedModel export for TF Serving, and loading an export back.

Shape shorthand: B images in a request, H x W their size, S the model's input side,
D = `max_detections`.

Layout: TF Serving's `<name>/<version>/`, e.g. `EXPORT_DIR/1/` holds `saved_model.pb`,
`variables/` and `assets.extra/gsfc_tf.json` (class names, image size, score thresholds and the
detector config, for humans; the training dataset, which `gsfc-tf evaluate` scores by default).
The version directory appears in one rename, so a server watching `EXPORT_DIR` never loads a
half-written model.

Score threshold: `serving_default` and `serving_tensor` return only the detections scoring at
least the minimum score `gsfc-tf predict` would apply to the same model
(`detector.threshold_or_default`): the operating threshold (chosen on validation,
`conventions.operating_index`), else `detector.DEFAULT_MIN_SCORE`; under TTA an operating
threshold is required, as one chosen without TTA does not fit TTA's scores. So a TF Serving
client gets the rows of `predict`'s catalogue and needs no threshold of its own. The metadata's
`score_threshold` is that minimum score and `operating_threshold` the operating threshold, or
null. `all_detections` returns every detection the model keeps (above the detector's own
`score_threshold`, 0.05 by default), for completeness/purity curves and clients that choose their
own threshold; `detector.load_exported` reads it, and `detector.load_detector` applies the
recorded operating threshold where `predict` would.

Signatures (tag `serve`):
    `serving_default`: input `image_bytes` tf.string [B], PNG or JPEG files (TF Serving's REST
        API takes them as `{"b64": "..."}`). All images of one request must share H x W.
    `serving_tensor`: input `images` tf.uint8 [B, H, W, 3] (uint8 only: the training images
        are 8-bit, and a float32 request would be 4x larger for the same information). The
        signature declares no shape, so that the graph itself can check rank and channels and
        answer a wrong shape with an InvalidArgumentError naming [B, H, W, 3] (TensorFlow's
        optimiser drops a rank check on an input declared rank 4).
    `all_detections`: input `images` as `serving_tensor`; every detection (see above).

All three prepare the images exactly as training did (`data.model_inputs`, through the same
`detector.Detector` function that `evaluate`/`predict` run): a 400x400 Clump Scout cutout is
centre-cropped to 200x200, any other size is taken as the crop, then it is resized to S x S.
Decoding, the detector, NMS, the score thresholds and, when exported with `tta`, dihedral
test-time augmentation all run in the graph. Outputs
(TF Object Detection API names):
    `num_detections`: int32 [B].
    `detection_boxes`: float32 [B, D, 4], yxyx normalised by the H, W of the image as sent
        (of the whole cutout, not the crop), so a client can draw them on its own image.
    `detection_scores`: float32 [B, D], descending within each image.
    `detection_classes`: int32 [B, D], 1 `clump`, 2 `odd_clump`.
Slots past `num_detections` are padding: boxes, scores and classes there are 0. An empty batch
(B = 0) to `serving_tensor` or `all_detections` gives empty outputs of these shapes.

A request with bytes that are not PNG/JPEG, a corrupt file, mixed image sizes or no images
fails with an InvalidArgumentError saying which; the next request is served normally.

`detector.load_exported(path)` gives back the library's internal form (pixel boxes, class ids 0/1),
and `detector.load_detector(path)` a `Detector`; the signature names and `METADATA_PATH` live there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf

from gsfc_tf import __version__, conventions
from gsfc_tf.detector import (
    ALL_DETECTIONS_SIGNATURE,
    BYTES_SIGNATURE,
    METADATA_PATH,
    TENSOR_SIGNATURE,
    Detector,
    threshold_or_default,
)
from gsfc_tf.ops.boxes import from_window
from gsfc_tf.ops.suppression import keep_scores_at_least
from gsfc_tf.tta import DEFAULT_TTA_MERGE

__all__ = [
    "check_export_dir",
    "export_saved_model",
]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _decode_images(image_bytes: tf.Tensor) -> tf.Tensor:
    """Decodes B PNG/JPEG strings of one size into uint8 [B, H, W, 3].

    Raises (when run):
        InvalidArgumentError: an empty request, bytes that are not PNG/JPEG (naming the index),
            a corrupt file, or images of different sizes.
    """
    count = tf.size(image_bytes)
    check_count = tf.debugging.assert_positive(count, message="image_bytes: the request holds no images")

    # Plain graph code: AutoGraph cannot convert these closures and would warn on every export.
    @tf.autograph.experimental.do_not_convert
    def decode(index, encoded):
        is_png = tf.equal(tf.strings.substr(encoded, 0, len(_PNG_SIGNATURE)), _PNG_SIGNATURE)
        check = tf.debugging.Assert(
            tf.logical_or(is_png, tf.io.is_jpeg(encoded)),
            ["image_bytes: the image at this index is neither PNG nor JPEG:", index],
        )
        with tf.control_dependencies([check]):
            # INTEGER_ACCURATE: the JPEG decoding of Pillow (`catalogue.read_cutout`, the builder);
            # TF's default fast DCT differs by up to 4 levels on most pixels.
            return tf.cond(
                is_png,
                lambda: tf.io.decode_png(encoded, channels=3, dtype=tf.uint8),
                lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
            )

    with tf.control_dependencies([check_count]):
        # map_fn's own error on mixed sizes names a TensorArray; decoding the first image twice
        # (a millisecond) lets a request fail with a message a client understands.
        first_shape = tf.shape(decode(0, image_bytes[0]))

    @tf.autograph.experimental.do_not_convert
    def decode_same_size(index_and_bytes):
        image = decode(*index_and_bytes)
        same = tf.debugging.assert_equal(
            tf.shape(image), first_shape, message="image_bytes: all images in one request must have the same height and width"
        )
        with tf.control_dependencies([same]):
            return tf.identity(image)

    return tf.map_fn(
        decode_same_size, (tf.range(count), image_bytes), fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8)
    )


def _checked_images(images: tf.Tensor) -> tf.Tensor:
    """`images` of any shape, checked when run to be [B, H, W, 3] and given that static shape.

    Raises (when run):
        InvalidArgumentError: another rank or channel count, naming the shape expected and got.
    """
    shape = tf.shape(images)
    # shape[-1:] rather than shape[-1]: a scalar has no last dimension to index.
    is_batch_of_rgb = tf.logical_and(tf.equal(tf.size(shape), 4), tf.reduce_all(tf.equal(shape[-1:], 3)))
    check = tf.debugging.Assert(
        is_batch_of_rgb,
        ["images: expected uint8 [B, H, W, 3] (a batch of RGB images), got shape", shape],
        summarize=8,
    )
    with tf.control_dependencies([check]):
        return tf.ensure_shape(images, [None, None, None, 3])


def _serving_outputs(detections: dict, images: tf.Tensor) -> dict[str, tf.Tensor]:
    """`Detector` outputs (pixel boxes of `images` [B, H, W, 3], ids 0/1) → the outputs above."""
    height_width = tf.cast(tf.shape(images)[1:3], tf.float32)
    num = detections["num_detections"]
    valid = tf.range(tf.shape(detections["classes"])[1])[tf.newaxis] < num[:, tf.newaxis]
    classes = conventions.to_model_class(tf.cast(detections["classes"], tf.int32))
    return {
        "num_detections": num,
        # Pixels are a window on the unit square, magnified (H, W) times.
        "detection_boxes": from_window(detections["boxes"], scale_yx=height_width),
        "detection_scores": detections["scores"],
        "detection_classes": tf.where(valid, classes, conventions.BACKGROUND_CLASS),
    }


def _serving_functions(detect, score_threshold: float) -> dict[str, tuple[Callable, list[tf.TensorSpec]]]:
    """The three signatures' functions and input signatures, by signature name.

    Args:
        detect: a `Detector.detect_fn`, uint8 [B, H, W, 3] → detections in input pixels.
        score_threshold: the detections `serving_default` and `serving_tensor` return score at least this.
    """

    def at_threshold(detections):
        return keep_scores_at_least(detections, score_threshold)

    @tf.function
    def serve_bytes(image_bytes):
        images = _decode_images(image_bytes)
        return _serving_outputs(at_threshold(detect(images)), images)

    @tf.function
    def serve_tensor(images):
        images = _checked_images(images)
        return _serving_outputs(at_threshold(detect(images)), images)

    @tf.function
    def serve_all(images):
        images = _checked_images(images)
        return _serving_outputs(detect(images), images)

    images_spec = [tf.TensorSpec(None, tf.uint8, name="images")]
    return {
        BYTES_SIGNATURE: (serve_bytes, [tf.TensorSpec([None], tf.string, name="image_bytes")]),
        TENSOR_SIGNATURE: (serve_tensor, images_spec),
        ALL_DETECTIONS_SIGNATURE: (serve_all, images_spec),
    }


def check_export_dir(export_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Checks that `export_dir` is a writable TF Serving version directory; returns it as a Path.

    Raises:
        ValueError: the last path component is not an integer version.
        FileExistsError: `export_dir` is a file, or is non-empty and `overwrite` is False; the
            message says whether it holds a SavedModel or names the files it holds.
    """
    export_dir = Path(export_dir)
    if not export_dir.name.isdigit():
        raise ValueError(f"TF Serving loads only integer version directories, got {export_dir}; use e.g. {export_dir / '1'}.")
    if export_dir.exists() and not export_dir.is_dir():
        raise FileExistsError(f"{export_dir} is a file, not a version directory; choose another path.")
    held = sorted(path.name for path in export_dir.iterdir()) if export_dir.is_dir() else []
    if held and not overwrite:
        if (export_dir / "saved_model.pb").is_file():
            raise FileExistsError(f"{export_dir} already holds a SavedModel; pass overwrite=True (--overwrite) to replace it.")
        listed = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
        raise FileExistsError(
            f"{export_dir} is not empty: it holds {listed}; choose another version directory, or pass overwrite=True "
            "(--overwrite) to delete its contents and export there."
        )
    return export_dir


def export_saved_model(
    model: keras.Model,
    export_dir: str | Path,
    *,
    overwrite: bool = False,
    operating_threshold: float | None = None,
    tta: bool = False,
    tta_merge: str = DEFAULT_TTA_MERGE,
    dataset: str | None = None,
) -> Path:
    """Writes `model` as a TF Serving SavedModel version directory (see the module docstring).

    Args:
        model: a `FasterRCNN` (any model with `detector_config` and the same call outputs).
        export_dir: the version directory, `<base>/<version>` with an integer version.
        overwrite: replace an existing non-empty version directory.
        operating_threshold: the score threshold chosen on the run's validation split (under
            TTA when `tta`), recorded in the metadata so that catalogues made from the export
            keep the run's operating point (`detector.load_detector`); None when the run has
            none. `serving_default` and `serving_tensor` serve detections scoring at least
            `detector.threshold_or_default` of it (module docstring).
        tta, tta_merge: build dihedral test-time augmentation into the graph (8x the compute
            per request), as `detector.Detector.from_model`; the metadata's `tta` names the
            merge, or is None without TTA.
        dataset: the TFDS dataset the model was trained on (the run's `config.json`), recorded so
            that `gsfc-tf evaluate` scores the export on it; None when unknown.

    Returns:
        `export_dir` as a Path.

    Raises:
        ValueError, FileExistsError: see `check_export_dir`.
        ValueError: `tta` without `operating_threshold`; nothing is written.
    """
    export_dir = check_export_dir(export_dir, overwrite=overwrite)
    score_threshold = threshold_or_default(operating_threshold, tta=tta, source=f"the model exported to {export_dir}")
    config = model.detector_config
    detect = Detector.from_model(model, tta=tta, tta_merge=tta_merge).detect_fn
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (function, input_signature) in _serving_functions(detect, score_threshold).items():
        archive.add_endpoint(name, function, input_signature=input_signature)
    metadata = {
        "gsfc_tf_version": __version__,
        "signatures": {
            BYTES_SIGNATURE: "image_bytes: string [B] PNG/JPEG; detections scoring >= score_threshold",
            TENSOR_SIGNATURE: "images: uint8 [B, H, W, 3]; detections scoring >= score_threshold",
            ALL_DETECTIONS_SIGNATURE: "images: uint8 [B, H, W, 3]; every detection (> detector.score_threshold)",
        },
        "detection_classes": {str(conventions.to_model_class(k)): name for k, name in enumerate(conventions.CLASS_NAMES)},
        "detection_boxes": "yxyx normalised by the input image height and width",
        "image_size": config.image_size,
        "score_threshold": score_threshold,
        "operating_threshold": operating_threshold,
        "max_detections": config.max_detections,
        "tta": tta_merge if tta else None,
        "dataset": dataset,
        "detector": dataclasses.asdict(config),
    }
    _write_version_dir(archive, metadata, export_dir)
    return export_dir


def _write_version_dir(archive: keras.export.ExportArchive, metadata: dict, export_dir: Path) -> None:
    """Writes the SavedModel and its metadata into `export_dir`, which appears in one rename."""
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    # A dot-name is not an integer, so TF Serving ignores the directory while it is written.
    staging = export_dir.parent / f".{export_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        archive.write_out(str(staging), verbose=False)
        (staging / METADATA_PATH).parent.mkdir(exist_ok=True)
        (staging / METADATA_PATH).write_text(json.dumps(metadata, indent=2) + "\n")
        if export_dir.exists():
            shutil.rmtree(export_dir)
        os.replace(staging, export_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
