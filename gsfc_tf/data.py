"""Input pipeline: TFDS examples → padded, resized, augmented detector batches.

Shape shorthand: S model input side (pixels), N clumps in one galaxy, M `max_clumps`.

Every op here works eagerly and inside `tf.data.Dataset.map`. Boxes are absolute-pixel
`yxyx` in the frame of the image they travel with; padding rows are all `conventions.PADDING`.

Examples stay uint8 at the crop size (`conventions.CROP_SIZE`) through caching and shuffling,
and are resized to S only per batch: at S = 400 a float copy of `synthetic` would need 7.7 GB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import tensorflow as tf

from gsfc_tf import conventions
from gsfc_tf.ops import dihedral
from gsfc_tf.ops.boxes import to_window

__all__ = [
    "augment_dihedral",
    "batch_examples",
    "from_tfds_example",
    "galaxies_to_dataset",
    "load_tfds_split",
    "model_inputs",
    "pad_targets",
    "resize_example",
    "tfds_examples",
]


def load_tfds_split(
    dataset: str, split: str, *, data_dir: str | None = None, manual_dir: str | None = None
) -> tf.data.Dataset:
    """Prepares `dataset` if needed and returns the raw TFDS examples of `split`, in order.

    `dataset` is any TFDS name the registry or `data_dir` knows, e.g. `clump_scout/synthetic`,
    or a custom config already prepared in `data_dir`. A prepared `clump_scout/sdss` is reused
    only when `manual_dir` (if given) holds the files it was built from.

    Raises:
        ValueError: an unknown dataset or config (one line naming the `clump_scout` configs);
            a prepared `sdss` built from other files than `manual_dir`; a preparation that
            leaves a split empty.
        FileNotFoundError: `data_dir` or `manual_dir` does not exist.
    """
    import tensorflow_datasets as tfds

    from tfds_clumpscout.clump_scout.clump_scout_dataset_builder import Builder  # registers clump_scout

    if data_dir is not None and not Path(data_dir).is_dir():
        raise FileNotFoundError(f"Data dir {data_dir} does not exist; create it or leave --data-dir out.")
    if manual_dir is not None and not Path(manual_dir).is_dir():
        raise FileNotFoundError(f"Manual dir {manual_dir} does not exist; it must hold the catalogue and cutouts.")
    builder = _tfds_builder(dataset, data_dir)
    if manual_dir is not None and isinstance(builder, Builder):
        builder.check_manual_dir(manual_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    return builder.as_dataset(split=split, shuffle_files=False)


def _tfds_builder(dataset: str, data_dir: str | None):
    """`tfds.builder`, failing in one line where TFDS would list all of its ~470 datasets."""
    import tensorflow_datasets as tfds

    from tfds_clumpscout.clump_scout.clump_scout_dataset_builder import Builder

    def unknown(reason: str) -> ValueError:
        configs = ", ".join(f"{Builder.name}/{name}" for name in Builder.builder_configs)
        return ValueError(f"Unknown dataset {dataset!r} ({reason}); the clump_scout configs are {configs}.")

    try:
        name, kwargs = tfds.core.naming.parse_builder_name_kwargs(dataset)
    except ValueError as error:
        raise unknown(str(error).splitlines()[0]) from None
    try:
        return tfds.builder(dataset, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise unknown("neither TFDS nor the data dir has it") from None
    except ValueError:
        # A clump_scout config that is neither in the code nor prepared in the data dir.
        config = kwargs.get("config")
        if name.name != Builder.name or config is None or config in Builder.builder_configs:
            raise
        raise unknown(f"{Builder.name} has no config {config!r} and the data dir holds none") from None


def from_tfds_example(example: dict) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Unpacks a `clump_scout` example into (image uint8 [H, W, 3], boxes_yxyx px [N, 4], labels [N])."""
    image = example["image"]
    boxes_yxyx = to_window(example["objects"]["bbox"], scale_yx=tf.cast(tf.shape(image)[:2], tf.float32))
    return image, boxes_yxyx, tf.cast(example["objects"]["label"], tf.int32)


def resize_example(image: tf.Tensor, boxes_yxyx: tf.Tensor, *, image_size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Resizes a uint8 image to float32 [S, S, 3] in [0, 1] and scales its boxes to match.

    Args:
        image: uint8 [H, W, 3].
        boxes_yxyx: float32 [N, 4], pixels of `image`.
        image_size: S.

    Returns:
        (float32 [S, S, 3] in [0, 1], float32 [N, 4] pixels of the resized image).
    """
    image = tf.convert_to_tensor(image)
    if image.shape.rank != 3:
        raise ValueError(f"Expected one image [H, W, C], got shape {image.shape}.")
    scale = tf.constant(float(image_size)) / tf.cast(tf.shape(image)[:2], tf.float32)
    resized = tf.image.resize(tf.cast(image, tf.float32) / 255.0, (image_size, image_size))
    boxes_yxyx = to_window(tf.cast(boxes_yxyx, tf.float32), scale_yx=scale)
    return tf.clip_by_value(resized, 0.0, 1.0), boxes_yxyx


def model_inputs(
    images: tf.Tensor,
    *,
    image_size: int,
    cutout_size: int = conventions.CUTOUT_SIZE,
    crop_size: int = conventions.CROP_SIZE,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Turns cutouts or crops into the detector's input, exactly as the training data was made.

    A `cutout_size` square image is centre-cropped to `crop_size` (as the `clump_scout` builder
    does, both from `conventions`); any other image is taken as the crop. Then it is resized to
    S x S like `resize_example`. The S frame is a window on the input image: boxes predicted in
    it map back to input pixels with `ops.boxes.from_window(boxes, scale_yx=scale, offset_yx=offset)`.

    Args:
        images: uint8 [B, H, W, 3] (0-255) or float32 [B, H, W, 3] in [0, 1].
        image_size: S.
        cutout_size, crop_size: the crop geometry (`PreparationRules` of the training data).

    Returns:
        (float32 [B, S, S, 3] in [0, 1], offset float32 [2] (y, x) of the crop in the input,
        scale float32 [2] (y, x) = S / crop side).
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4 or images.shape[-1] != 3:
        raise ValueError(f"Expected images [B, H, W, 3], got shape {images.shape}.")
    if images.dtype == tf.uint8:
        images = tf.cast(images, tf.float32) / 255.0
    images = tf.cast(images, tf.float32)
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    is_cutout = tf.logical_and(tf.equal(height, cutout_size), tf.equal(width, cutout_size))
    margin = conventions.crop_offset(cutout_size, crop_size)
    offset = tf.cast(tf.where(is_cutout, margin, 0), tf.float32) * tf.ones([2])
    images = tf.cond(
        is_cutout, lambda: images[:, margin : margin + crop_size, margin : margin + crop_size], lambda: images
    )
    crop_height_width = tf.cast(tf.shape(images)[1:3], tf.float32)
    resized = tf.clip_by_value(tf.image.resize(images, (image_size, image_size)), 0.0, 1.0)
    return resized, offset, float(image_size) / crop_height_width


def pad_targets(boxes_yxyx: tf.Tensor, labels: tf.Tensor, *, max_clumps: int) -> dict[str, tf.Tensor]:
    """Pads one galaxy's ground truth to M rows of `conventions.PADDING` (-1).

    A galaxy with more than M clumps is an error rather than a silent truncation.

    Returns:
        {"boxes_yxyx": float32 [M, 4], "labels": int32 [M]}.
    """
    message = f"A galaxy has more clumps than max_clumps={max_clumps}; raise max_clumps in the config."
    labels = tf.convert_to_tensor(labels)
    if labels.shape[0] is not None and labels.shape[0] > max_clumps:
        raise ValueError(f"{message} It has {labels.shape[0]}.")
    num_clumps = tf.shape(labels)[0]
    check = tf.debugging.assert_less_equal(num_clumps, max_clumps, message=message)
    with tf.control_dependencies([check]):
        padding = max_clumps - num_clumps
    boxes_yxyx = tf.pad(tf.cast(boxes_yxyx, tf.float32), [[0, padding], [0, 0]], constant_values=conventions.PADDING)
    labels = tf.pad(tf.cast(labels, tf.int32), [[0, padding]], constant_values=conventions.PADDING)
    return {
        "boxes_yxyx": tf.ensure_shape(boxes_yxyx, [max_clumps, 4]),
        "labels": tf.ensure_shape(labels, [max_clumps]),
    }


def augment_dihedral(
    image: tf.Tensor, targets: dict[str, tf.Tensor], *, seed: tf.Tensor
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """Applies one of the 8 flips/90° rotations of a square image to it and its boxes.

    Galaxies have no preferred orientation, so all eight are equally valid. KerasCV has
    box-aware flips but no box-aware 90° rotation, and one dihedral draw covers both.

    Args:
        image: float32 [S, S, C].
        targets: {"boxes_yxyx": [M, 4] pixels, "labels": [M]}, padding rows -1.
        seed: int32 [2], a stateless seed (`tf.data` gives each element its own).
    """
    size = image.shape[0]
    if size is None or size != image.shape[1]:
        raise ValueError(f"augment_dihedral needs a square image of static size, got {image.shape}.")
    draw = tf.random.stateless_uniform([], seed=seed, maxval=dihedral.NUM_DIHEDRAL, dtype=tf.int32)
    image = dihedral.transform_images(image, draw)
    boxes_yxyx = targets["boxes_yxyx"]
    transformed = dihedral.transform_boxes(boxes_yxyx, draw, size=size)
    valid = targets["labels"] >= 0
    boxes_yxyx = tf.where(valid[:, None], transformed, boxes_yxyx)
    return tf.ensure_shape(image, [size, size, image.shape[-1]]), {**targets, "boxes_yxyx": boxes_yxyx}


def _resize_targets_example(
    image: tf.Tensor, targets: dict[str, tf.Tensor], *, image_size: int
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """`resize_example` for a padded example: padding rows stay -1."""
    resized, boxes_yxyx = resize_example(image, targets["boxes_yxyx"], image_size=image_size)
    valid = targets["labels"] >= 0
    return resized, {**targets, "boxes_yxyx": tf.where(valid[:, None], boxes_yxyx, targets["boxes_yxyx"])}


def galaxies_to_dataset(galaxies: Iterable, *, max_clumps: int) -> tf.data.Dataset:
    """Turns in-memory galaxies (objects with `.image`, `.boxes_yxyx`, `.labels`) into examples.

    Used by tests, benchmarks and notebooks that generate synthetic galaxies directly.

    Returns:
        A dataset of (uint8 image [H, W, 3], padded targets in its pixels), like `tfds_examples`.
    """
    galaxies = list(galaxies)
    if not galaxies:
        raise ValueError("galaxies_to_dataset got no galaxies.")
    images = np.stack([g.image for g in galaxies])
    targets = [pad_targets(g.boxes_yxyx, g.labels, max_clumps=max_clumps) for g in galaxies]
    boxes = np.stack([t["boxes_yxyx"].numpy() for t in targets])
    labels = np.stack([t["labels"].numpy() for t in targets])
    return tf.data.Dataset.from_tensor_slices((images, {"boxes_yxyx": boxes, "labels": labels}))


def tfds_examples(dataset: tf.data.Dataset, *, max_clumps: int) -> tf.data.Dataset:
    """Maps raw `clump_scout` examples to (uint8 image [H, W, 3], padded targets in its pixels)."""

    def unpack(example):
        image, boxes_yxyx, labels = from_tfds_example(example)
        return image, pad_targets(boxes_yxyx, labels, max_clumps=max_clumps)

    return dataset.map(unpack, num_parallel_calls=tf.data.AUTOTUNE)


def batch_examples(
    dataset: tf.data.Dataset,
    *,
    batch_size: int,
    image_size: int,
    augment: bool = False,
    shuffle_buffer: int = 0,
    seed: int = 0,
    skip_batches: int = 0,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """Shuffles, augments, resizes to S, batches and prefetches (uint8 image, targets) examples.

    `skip_batches` drops the first batches without changing the rest: each example keeps the
    augmentation draw it would have had, so a resumed run continues exactly where it stopped.

    Returns:
        Batches of (float32 [B, S, S, 3] in [0, 1], targets in S-frame pixels).
    """
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if augment:
        dataset = tf.data.Dataset.zip((dataset, tf.data.Dataset.random(seed=seed).batch(2)))
    dataset = dataset.skip(skip_batches * batch_size)
    if augment:
        dataset = dataset.map(
            lambda example, s: augment_dihedral(*example, seed=tf.cast(s, tf.int32)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    dataset = dataset.map(
        lambda image, targets: _resize_targets_example(image, targets, image_size=image_size),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
