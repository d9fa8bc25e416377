"""Tests for gsfc_tf.realimages: segmentation, crops and the false-positive count, on made-up fields."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gsfc_tf.evaluation import ImageBoxes
from gsfc_tf.realimages import (
    background_crops,
    detections_per_crop,
    galaxy_crops,
    hubble_deep_field,
    segment_sources,
)

skimage = pytest.importorskip("skimage")


def field(blobs, *, shape=(300, 400), seed=0):
    """uint8 [H, W, 3] noisy sky with round Gaussian sources given as (y, x, sigma, peak)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    light = 20.0 + rng.normal(0.0, 3.0, shape)
    for cy, cx, sigma, peak in blobs:
        light += peak * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))
    return np.repeat(np.clip(light, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def test_segment_sources_finds_each_source_and_no_noise():
    labels = segment_sources(field([(80, 80, 10, 150), (200, 300, 3, 150)]))
    assert labels.max() == 2
    assert labels[80, 80] != labels[200, 300] and labels[80, 80] > 0 and labels[200, 300] > 0
    areas = np.bincount(labels.ravel())[1:]
    assert areas[labels[80, 80] - 1] > 5 * areas[labels[200, 300] - 1]
    assert labels[150, 200] == 0


def test_galaxy_crops_centre_the_largest_sources_inside_the_image():
    image = field([(150, 300, 12, 150), (60, 60, 6, 150), (250, 120, 2, 150)])
    crops = galaxy_crops(image, 2, size=100)
    assert [(c.y0, c.x0) for c in crops] == [(100, 250), (10, 10)]  # the second shifted off the edge
    for crop in crops:
        np.testing.assert_array_equal(crop.image, image[crop.y0 : crop.y0 + 100, crop.x0 : crop.x0 + 100])
    assert len(galaxy_crops(image, 10, size=100)) == 3  # only as many as there are sources


def test_background_crops_avoid_large_sources_and_do_not_overlap():
    image = field([(150, 100, 15, 150), (40, 330, 1.5, 120)])
    crops = background_crops(image, 5, size=100, max_source_area=200, stride=20)
    assert len(crops) >= 2
    labels = segment_sources(image)
    big = labels == labels[150, 100]
    for i, crop in enumerate(crops):
        assert crop.image.shape == (100, 100, 3)
        assert not big[crop.y0 : crop.y0 + 100, crop.x0 : crop.x0 + 100].any()
        for other in crops[:i]:
            assert abs(crop.y0 - other.y0) >= 100 or abs(crop.x0 - other.x0) >= 100
    # Emptiest first: the first crop holds no source at all.
    assert labels[crops[0].y0 : crops[0].y0 + 100, crops[0].x0 : crops[0].x0 + 100].max() == 0


def test_detections_per_crop_counts_at_the_threshold():
    boxes = [[0, 0, 10, 10]] * 3
    predictions = [ImageBoxes(boxes, [0, 1, 0], [0.9, 0.5, 0.2]), ImageBoxes(np.zeros((0, 4)), [], [])]
    assert detections_per_crop(predictions, 0.5) == 1.0
    assert detections_per_crop(predictions, 0.1) == 1.5
    with pytest.raises(ValueError, match="scores"):
        detections_per_crop([ImageBoxes(boxes, [0, 0, 0])], 0.5)


def test_hubble_deep_field_is_bundled_and_has_background_crops():
    # Shipped inside the wheel, so reading it never downloads.
    assert (Path(skimage.data.__file__).parent / "hubble_deep_field.jpg").is_file()
    image = hubble_deep_field()
    assert image.shape == (872, 1000, 3) and image.dtype == np.uint8
    assert len(background_crops(image, 3)) == 3
    assert len(galaxy_crops(image, 6)) == 6


def test_module_does_not_import_skimage():
    code = "import sys; import gsfc_tf.realimages; assert 'skimage' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
