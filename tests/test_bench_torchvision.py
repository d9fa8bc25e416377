"""The torchvision twin of the smoke detector in `benchmarks/bench_accuracy_torchvision.py` is a twin.

Its parity figure means something only if the torch side has our backbone, our anchors and our
post-processing; these tests compare each with the Keras side.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import torch
from torchvision.models.detection.image_list import ImageList

from benchmarks import bench_accuracy_torchvision as parity
from gsfc_tf import data
from gsfc_tf.backbones import build_backbone
from gsfc_tf.config import smoke
from gsfc_tf.detector import Detector
from gsfc_tf.ops import anchor_boxes, box_iou
from gsfc_tf.ops.suppression import share_box_sides


def _copy_keras_weights(keras_backbone, torch_backbone):
    for level, stage in enumerate(torch_backbone.stages, start=1):
        conv_down, bn_down, _, conv, bn, _ = stage
        for torch_conv, torch_bn, name in ((conv_down, bn_down, f"stage{level}_down"), (conv, bn, f"stage{level}_conv")):
            (kernel,) = keras_backbone.get_layer(name).get_weights()
            torch_conv.weight.data = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
            bn_name = f"stage{level}_down_bn" if name.endswith("_down") else f"stage{level}_bn"
            gamma, beta, mean, variance = keras_backbone.get_layer(bn_name).get_weights()
            for tensor, value in ((torch_bn.weight, gamma), (torch_bn.bias, beta),
                                  (torch_bn.running_mean, mean), (torch_bn.running_var, variance)):
                tensor.data = torch.from_numpy(value.copy())


@pytest.mark.parametrize("size", [128, 100])  # 100: odd feature sides, where "same" padding is one-sided
def test_torch_tiny_backbone_is_the_keras_one(size):
    keras_backbone = build_backbone("tiny", input_shape=(size, size, 3))
    torch_backbone = parity.TinyBackbone().eval()
    assert sum(p.numel() for p in torch_backbone.parameters()) == sum(
        int(np.prod(v.shape)) for v in keras_backbone.trainable_variables
    )
    assert sum(b.numel() for name, b in torch_backbone.named_buffers() if "running" in name) == sum(
        int(np.prod(v.shape)) for v in keras_backbone.non_trainable_variables
    )
    # Non-trivial BatchNorm statistics, so the eps and the stats' roles are compared too.
    rng = np.random.default_rng(0)
    for layer in keras_backbone.layers:
        if layer.name.endswith("bn"):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, variance.shape)])
    _copy_keras_weights(keras_backbone, torch_backbone)

    images = rng.uniform(size=(2, size, size, 3)).astype(np.float32)
    keras_features = keras_backbone(images, training=False)
    with torch.no_grad():
        torch_features = torch_backbone(torch.from_numpy(images).permute(0, 3, 1, 2))
    assert list(torch_features) == sorted(keras_features)
    for name, keras_map in keras_features.items():
        torch_map = torch_features[name].permute(0, 2, 3, 1).numpy()
        assert torch_map.shape == tuple(keras_map.shape), name
        np.testing.assert_allclose(torch_map, keras_map.numpy(), atol=1e-4, err_msg=name)


def _rows_sorted(boxes):
    return boxes[np.lexsort(boxes.T[::-1])]


def test_torchvision_anchors_are_ours():
    config = smoke()
    size = config.image_size
    model = parity.build_torchvision_detector(config)
    images = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        features = list(model.backbone(images).values())
    (anchors_xyxy,) = model.rpn.anchor_generator(ImageList(images, [(size, size)]), features)
    ours_yxyx = np.concatenate(anchor_boxes(
        size, sizes=config.anchor_sizes, strides=tuple(2**level for level in range(config.min_level, config.max_level + 1)),
        scales=config.anchor_scales, aspect_ratios=config.anchor_aspect_ratios,
    ))
    theirs_yxyx = anchors_xyxy.numpy()[:, [1, 0, 3, 2]]
    assert theirs_yxyx.shape == ours_yxyx.shape
    np.testing.assert_allclose(_rows_sorted(theirs_yxyx), _rows_sorted(ours_yxyx), atol=1e-4)


def test_torchvision_detections_get_our_post_processing():
    """Crop-pixel yxyx boxes and dataset classes out; with `agnostic_nms_iou` no two boxes overlap above it."""
    # Score threshold 0: an untrained model then returns many overlapping boxes of both classes.
    config = smoke(score_threshold=0.0, agnostic_nms_iou=None, box_voting_iou=None, side_sharing=None)
    torch.manual_seed(0)
    model = parity.build_torchvision_detector(config).eval()
    with pytest.raises(ValueError, match="box_voting_iou=None"):
        parity._TorchvisionAsKeras(model, smoke())
    crop = np.random.default_rng(0).integers(0, 256, (1, 200, 200, 3), dtype=np.uint8)
    with torch.no_grad():
        inputs = data.model_inputs(crop, image_size=config.image_size)[0].numpy()
        (raw,) = model([torch.from_numpy(inputs[0]).permute(2, 0, 1)])

    plain = Detector.from_model(parity._TorchvisionAsKeras(model, config)).detect(crop)
    count = int(plain["num_detections"][0])
    assert count == len(raw["scores"]) > 1
    scale = 200 / config.image_size
    np.testing.assert_allclose(plain["boxes"][0, :count], raw["boxes"].numpy()[:, [1, 0, 3, 2]] * scale, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(plain["classes"][0, :count], raw["labels"].numpy() - 1)
    assert box_iou(plain["boxes"][0, :count], plain["boxes"][0, :count]).numpy()[np.triu_indices(count, 1)].max() > 0.2

    agnostic = dataclasses.replace(config, agnostic_nms_iou=0.2)
    kept = Detector.from_model(parity._TorchvisionAsKeras(model, agnostic)).detect(crop)
    kept_count = int(kept["num_detections"][0])
    assert 0 < kept_count < count
    kept_boxes = kept["boxes"][0, :kept_count]
    assert box_iou(kept_boxes, kept_boxes).numpy()[np.triu_indices(kept_count, 1)].max() <= 0.2
    # Shared sides come after that stage, as in `DetectionPostprocess` (in crop pixels here: sharing
    # commutes with the uniform rescaling back to the crop).
    shared = Detector.from_model(parity._TorchvisionAsKeras(model, dataclasses.replace(agnostic, side_sharing=0.5))).detect(crop)
    expected = share_box_sides({k: tf.constant(v) for k, v in kept.items()}, fraction=0.5, image_size=200)
    np.testing.assert_allclose(shared["boxes"], expected["boxes"].numpy(), rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(shared["scores"], kept["scores"])
    assert not np.allclose(shared["boxes"], kept["boxes"], atol=1e-2)

