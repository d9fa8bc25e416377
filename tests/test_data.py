"""The input pipeline: resizing, padding and box-safe dihedral augmentation, eager and in tf.data."""

from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from gsfc_tf import data


def _paint(size, boxes_yxyx):
    """One channel per box: 1 inside the box (integer pixel corners), 0 elsewhere."""
    image = np.zeros((size, size, len(boxes_yxyx)), np.float32)
    for channel, (y1, x1, y2, x2) in enumerate(boxes_yxyx.astype(int)):
        image[y1:y2, x1:x2, channel] = 1.0
    return image


def test_resize_scales_image_and_boxes():
    image = np.full((200, 200, 3), 255, np.uint8)
    boxes = np.array([[10.0, 20.0, 30.0, 50.0]], np.float32)
    resized, scaled = data.resize_example(image, boxes, image_size=400)
    assert resized.shape == (400, 400, 3) and resized.dtype == tf.float32
    np.testing.assert_allclose(resized.numpy(), 1.0)
    np.testing.assert_allclose(scaled.numpy(), [[20.0, 40.0, 60.0, 100.0]])


def test_resize_rejects_batches():
    with pytest.raises(ValueError, match=r"\[H, W, C\]"):
        data.resize_example(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((0, 4)), image_size=4)


def test_pad_targets_pads_with_minus_one():
    padded = data.pad_targets(np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([1]), max_clumps=3)
    np.testing.assert_array_equal(padded["labels"].numpy(), [1, -1, -1])
    np.testing.assert_array_equal(padded["boxes_yxyx"].numpy()[1:], -np.ones((2, 4)))
    empty = data.pad_targets(np.zeros((0, 4)), np.zeros((0,), np.int64), max_clumps=2)
    np.testing.assert_array_equal(empty["labels"].numpy(), [-1, -1])


def test_pad_targets_refuses_to_truncate_eagerly_and_in_tf_data():
    boxes, labels = np.zeros((3, 4), np.float32), np.zeros((3,), np.int32)
    with pytest.raises(ValueError, match="max_clumps=2"):
        data.pad_targets(boxes, labels, max_clumps=2)
    dataset = tf.data.Dataset.from_generator(
        lambda: iter([(boxes, labels)]),
        output_signature=(tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32)),
    ).map(lambda b, l: data.pad_targets(b, l, max_clumps=2))
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_clumps=2"):
        list(dataset)


def _random_targets(rng, size, max_clumps, count):
    y1, x1 = rng.integers(0, size - 4, (2, count))
    h, w = rng.integers(1, 5, (2, count))
    boxes = np.stack([y1, x1, y1 + h, x1 + w], axis=1).astype(np.float32)
    labels = rng.integers(0, 2, count)
    return boxes, data.pad_targets(boxes, labels, max_clumps=max_clumps)


@pytest.mark.parametrize("in_tf_data", [False, True])
def test_dihedral_moves_boxes_with_the_pixels(in_tf_data):
    rng = np.random.default_rng(0)
    size, results = 16, []
    boxes, targets = _random_targets(rng, size, max_clumps=5, count=3)
    image = tf.constant(_paint(size, boxes))
    seeds = [tf.constant([s, 7], tf.int32) for s in range(40)]
    if in_tf_data:
        dataset = tf.data.Dataset.from_tensor_slices(tf.stack(seeds)).map(
            lambda seed: data.augment_dihedral(image, targets, seed=seed)
        )
        results = list(dataset)
    else:
        results = [data.augment_dihedral(image, targets, seed=seed) for seed in seeds]
    distinct = set()
    for moved_image, moved_targets in results:
        moved_boxes = moved_targets["boxes_yxyx"].numpy()
        np.testing.assert_array_equal(moved_targets["labels"].numpy(), targets["labels"].numpy())
        np.testing.assert_array_equal(moved_boxes[3:], -1.0)
        np.testing.assert_array_equal(moved_image.numpy(), _paint(size, moved_boxes[:3]))
        distinct.add(moved_image.numpy().tobytes())
    assert len(distinct) == 8, "all eight flips/rotations should occur"


def test_dihedral_rejects_non_square_images():
    targets = data.pad_targets(np.zeros((0, 4)), np.zeros((0,)), max_clumps=1)
    with pytest.raises(ValueError, match="square"):
        data.augment_dihedral(tf.zeros([8, 6, 3]), targets, seed=tf.constant([0, 0]))


def test_galaxies_to_batches_end_to_end():
    rng = np.random.default_rng(1)
    galaxies = []
    for count in (0, 1, 3):
        boxes = rng.uniform(0, 90, (count, 2)).repeat(2, axis=1)[:, [0, 2, 1, 3]] + [0, 0, 10, 10]
        galaxies.append(
            SimpleNamespace(
                image=rng.integers(0, 256, (100, 100, 3), dtype=np.uint8),
                boxes_yxyx=boxes.astype(np.float32),
                labels=rng.integers(0, 2, count),
            )
        )
    dataset = data.galaxies_to_dataset(galaxies, max_clumps=4)
    batches = list(data.batch_examples(dataset, batch_size=3, image_size=50, augment=True, shuffle_buffer=3, seed=3))
    assert len(batches) == 1
    images, targets = batches[0]
    assert images.shape == (3, 50, 50, 3)
    assert targets["boxes_yxyx"].shape == (3, 4, 4) and targets["labels"].shape == (3, 4)
    valid = targets["labels"].numpy() >= 0
    assert valid.sum() == 4
    np.testing.assert_array_equal(targets["boxes_yxyx"].numpy()[~valid], -1.0)
    boxes = targets["boxes_yxyx"].numpy()[valid]
    np.testing.assert_allclose(boxes[:, 2] - boxes[:, 0], 5.0, rtol=1e-5)  # 10 px at 100 → 5 px at 50
    assert boxes.min() >= 0 and boxes.max() <= 50


def test_skipping_batches_resumes_the_same_stream():
    rng = np.random.default_rng(2)
    galaxies = [
        SimpleNamespace(
            image=rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
            boxes_yxyx=np.array([[1.0, 2.0, 5.0, 9.0]], np.float32),
            labels=np.array([k % 2]),
        )
        for k in range(12)
    ]
    dataset = data.galaxies_to_dataset(galaxies, max_clumps=2)
    options = dict(batch_size=3, image_size=16, augment=True, shuffle_buffer=12, seed=5)
    full = list(data.batch_examples(dataset, **options))
    resumed = list(data.batch_examples(dataset, skip_batches=2, **options))
    assert len(full) == 4 and len(resumed) == 2
    for (images_a, targets_a), (images_b, targets_b) in zip(full[2:], resumed):
        np.testing.assert_array_equal(images_a.numpy(), images_b.numpy())
        np.testing.assert_array_equal(targets_a["boxes_yxyx"].numpy(), targets_b["boxes_yxyx"].numpy())


def test_model_inputs_crop_cutouts_and_resize_like_training():
    rng = np.random.default_rng(3)
    crop = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    cutout = np.zeros((400, 400, 3), np.uint8)
    cutout[100:300, 100:300] = crop
    from_crop, offset_crop, scale_crop = data.model_inputs(crop[None], image_size=128)
    from_cutout, offset_cutout, scale_cutout = data.model_inputs(cutout[None], image_size=128)
    expected, _ = data.resize_example(crop, np.zeros((0, 4)), image_size=128)
    np.testing.assert_allclose(from_crop[0].numpy(), expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(from_cutout[0].numpy(), expected.numpy(), atol=1e-6)
    np.testing.assert_array_equal(offset_crop.numpy(), [0, 0])
    np.testing.assert_array_equal(offset_cutout.numpy(), [100, 100])
    np.testing.assert_allclose(scale_cutout.numpy(), [0.64, 0.64])
    float_inputs, _, _ = data.model_inputs(crop[None].astype(np.float32) / 255.0, image_size=128)
    np.testing.assert_allclose(float_inputs.numpy(), from_crop.numpy(), atol=1e-6)
