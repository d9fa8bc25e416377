"""SavedModel export for TF Serving, and loading an export back.

Shape shorthand: B images in a request, H x W their size, S the model's input side,
D = `max_detections`.

Layout: TF Serving's `<name>/<version>/`, e.g. `EXPORT_DIR/1/` holds `saved_model.pb`,
`variables/` and `assets.extra/gsfc_tf.json` (class names, image size, score threshold and the
detector config, for humans). The version directory appears in one rename, so a server
watching `EXPORT_DIR` never loads a half-written model.

Signatures (tag `serve`):
    `serving_default`: input `image_bytes` tf.string [B], PNG or JPEG files (TF Serving's REST
        API takes them as `{"b64": "..."}`). All images of one request must share H x W.
    `serving_tensor`: input `images` tf.uint8 [B, H, W, 3] (uint8 only: the training images
        are 8-bit, and a float32 request would be 4x larger for the same information). The
        signature declares no shape, so that the graph itself can check rank and channels and
        answer a wrong shape with an InvalidArgumentError naming [B, H, W, 3] (TensorFlow's
        optimiser drops a rank check on an input declared rank 4).

Both prepare the images exactly as training did (`data.model_inputs`, through the same
`inference.Detector` function that `evaluate`/`predict` run): a 400x400 Clump Scout cutout is
centre-cropped to 200x200, any other size is taken as the crop, then it is resized to S x S.
Decoding, the detector, NMS, the score threshold and, when exported with `tta`, dihedral
test-time augmentation all run in the graph. Outputs
(TF Object Detection API names):
    `num_detections`: int32 [B].
    `detection_boxes`: float32 [B, D, 4], yxyx normalised by the H, W of the image as sent
        (of the whole cutout, not the crop), so a client can draw them on its own image.
    `detection_scores`: float32 [B, D], descending within each image.
    `detection_classes`: int32 [B, D], 1 `clump`, 2 `odd_clump`.
Slots past `num_detections` are padding: boxes, scores and classes there are 0.

A request with bytes that are not PNG/JPEG, a corrupt file, mixed image sizes or no images
fails with an InvalidArgumentError saying which; the next request is served normally.

`load_exported(path)` gives back the library's internal form (pixel boxes, class ids 0/1).
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

from gsfc_tf import __version__
from gsfc_tf.evaluation import CLASS_NAMES
from gsfc_tf.tta import DEFAULT_TTA_MERGE

__all__ = [
    "BYTES_SIGNATURE",
    "METADATA_PATH",
    "TENSOR_SIGNATURE",
    "check_export_dir",
    "export_saved_model",
    "load_exported",
    "read_metadata",
]

BYTES_SIGNATURE = "serving_default"
TENSOR_SIGNATURE = "serving_tensor"
METADATA_PATH = Path("assets.extra") / "gsfc_tf.json"

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
    return {
        "num_detections": num,
        "detection_boxes": detections["boxes"] / tf.tile(height_width, [2]),
        "detection_scores": detections["scores"],
        "detection_classes": tf.where(valid, tf.cast(detections["classes"], tf.int32) + 1, 0),
    }


def check_export_dir(export_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Checks that `export_dir` is a writable TF Serving version directory; returns it as a Path.

    Raises:
        ValueError: the last path component is not an integer version.
        FileExistsError: `export_dir` is non-empty and `overwrite` is False.
    """
    export_dir = Path(export_dir)
    if not export_dir.name.isdigit():
        raise ValueError(f"TF Serving loads only integer version directories, got {export_dir}; use e.g. {export_dir / '1'}.")
    if export_dir.exists() and any(export_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{export_dir} already holds a model; pass overwrite=True (--overwrite) to replace it.")
    return export_dir


def export_saved_model(
    model: keras.Model,
    export_dir: str | Path,
    *,
    overwrite: bool = False,
    operating_threshold: float | None = None,
    tta: bool = False,
    tta_merge: str = DEFAULT_TTA_MERGE,
) -> Path:
    """Writes `model` as a TF Serving SavedModel version directory (see the module docstring).

    Args:
        model: a `FasterRCNN` (any model with `detector_config` and the same call outputs).
        export_dir: the version directory, `<base>/<version>` with an integer version.
        overwrite: replace an existing non-empty version directory.
        operating_threshold: the score threshold chosen on the run's validation split, recorded in
            the metadata so that catalogues made from the export keep the run's operating point
            (`inference.load_detector`); None when the run has none.
        tta, tta_merge: build dihedral test-time augmentation into the graph (8x the compute
            per request), as `inference.Detector.from_model`; the metadata's `tta` names the
            merge, or is None without TTA.

    Returns:
        `export_dir` as a Path.

    Raises:
        ValueError, FileExistsError: see `check_export_dir`.
    """
    # Imported here: gsfc_tf.inference imports this module lazily in turn.
    from gsfc_tf.inference import Detector

    export_dir = check_export_dir(export_dir, overwrite=overwrite)
    detect = Detector.from_model(model, tta=tta, tta_merge=tta_merge).detect_fn

    @tf.function
    def serve_bytes(image_bytes):
        images = _decode_images(image_bytes)
        return _serving_outputs(detect(images), images)

    @tf.function
    def serve_tensor(images):
        images = _checked_images(images)
        return _serving_outputs(detect(images), images)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(BYTES_SIGNATURE, serve_bytes, input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    archive.add_endpoint(
        TENSOR_SIGNATURE, serve_tensor, input_signature=[tf.TensorSpec(None, tf.uint8, name="images")]
    )

    config = model.detector_config
    metadata = {
        "gsfc_tf_version": __version__,
        "signatures": {BYTES_SIGNATURE: "image_bytes: string [B] PNG/JPEG", TENSOR_SIGNATURE: "images: uint8 [B, H, W, 3]"},
        "detection_classes": {str(k + 1): name for k, name in enumerate(CLASS_NAMES)},
        "detection_boxes": "yxyx normalised by the input image height and width",
        "image_size": config.image_size,
        "score_threshold": config.score_threshold,
        "operating_threshold": operating_threshold,
        "max_detections": config.max_detections,
        "tta": tta_merge if tta else None,
        "detector": dataclasses.asdict(config),
    }
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
    return export_dir


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
    """Loads an export for use like the in-memory detector (via `serving_tensor`).

    Args:
        path: a version directory, or the base directory (its highest version is used).

    Returns:
        A function of uint8 images [B, H, W, 3] (numpy or tensor, one size) returning tensors
        `boxes` float32 [B, D, 4] (yxyx pixels of the input images), `scores` float32 [B, D],
        `classes` int32 [B, D] (0 clump, 1 odd_clump) and `num_detections` int32 [B]; slots
        past `num_detections` are 0, as in `FasterRCNN` outputs. Its `saved_model` attribute
        is the loaded SavedModel (for its `signatures`).
    """
    loaded = tf.saved_model.load(str(_version_dir(Path(path))))
    serve = loaded.signatures[TENSOR_SIGNATURE]

    def detect(images) -> dict[str, tf.Tensor]:
        images = tf.convert_to_tensor(images)
        if images.dtype != tf.uint8 or images.shape.rank != 4 or images.shape[-1] != 3:
            raise ValueError(f"Expected uint8 images [B, H, W, 3], got {images.dtype.name} {images.shape}.")
        outputs = serve(images=images)
        height_width = tf.cast(tf.shape(images)[1:3], tf.float32)
        classes = outputs["detection_classes"]
        return {
            "boxes": outputs["detection_boxes"] * tf.tile(height_width, [2]),
            "scores": outputs["detection_scores"],
            "classes": tf.where(classes > 0, classes - 1, 0),
            "num_detections": outputs["num_detections"],
        }

    # The signature's variables live as long as the loaded object.
    detect.saved_model = loaded
    return detect
