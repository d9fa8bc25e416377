"""Layer contract: build, output shapes, config round trip, and a fit step for trainable layers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from gsfc_tf.config import smoke
from gsfc_tf.layers import DetectionPostprocess, FeaturePyramid, MultiLevelRoiAlign, ProposalGenerator, RoiBoxHead, RpnHead
from gsfc_tf.models.faster_rcnn import POSTPROCESS_FIELDS
from gsfc_tf.ops import anchor_boxes, decode_boxes

RNG = np.random.default_rng(0)


def _pyramid(batch=2, sizes=(16, 8, 4, 2), channels=8):
    return [tf.constant(RNG.normal(size=(batch, s, s, channels)), tf.float32) for s in sizes]


def _boxes(batch, count, size=64.0):
    corner = RNG.uniform(0, size * 0.7, (batch, count, 2))
    side = RNG.uniform(3, size * 0.3, (batch, count, 2))
    return tf.constant(np.concatenate([corner, corner + side], -1), tf.float32)


class _Wrapper(keras.Model):
    """Feeds a list of inputs to one layer and reduces every output to one number per image."""

    def __init__(self, layer):
        super().__init__(name="wrapper")
        self.inner = layer

    def call(self, inputs):
        outputs = tf.nest.flatten(self.inner(*inputs))
        return tf.add_n([tf.reduce_mean(tf.reshape(o, [tf.shape(o)[0], -1]), axis=1, keepdims=True) for o in outputs])


def check_layer_contract(layer, inputs, expected_shapes):
    outputs = layer(*inputs)
    assert [tuple(o.shape) for o in tf.nest.flatten(outputs)] == [tuple(s) for s in expected_shapes]
    clone = layer.__class__.from_config(layer.get_config())
    clone(*inputs)
    clone.set_weights(layer.get_weights())
    for a, b in zip(tf.nest.flatten(outputs), tf.nest.flatten(clone(*inputs))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    serialized = keras.saving.serialize_keras_object(layer)
    assert keras.saving.deserialize_keras_object(serialized).get_config() == layer.get_config()
    if layer.trainable_weights:
        model = _Wrapper(layer)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        before = [w.numpy().copy() for w in layer.trainable_weights]
        history = model.fit(list(inputs), np.ones((inputs[0].shape[0] if hasattr(inputs[0], "shape") else 2, 1)), epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        assert any(not np.allclose(b, w.numpy()) for b, w in zip(before, layer.trainable_weights))


def test_feature_pyramid_contract():
    features = {f"C{k}": tf.constant(RNG.normal(size=(2, s, s, c)), tf.float32) for k, s, c in [(2, 25, 4), (3, 13, 6), (4, 7, 8), (5, 4, 8)]}
    check_layer_contract(FeaturePyramid(8, name="fpn"), (features,), [(2, 25, 25, 8), (2, 13, 13, 8), (2, 7, 7, 8), (2, 4, 4, 8)])


def test_rpn_head_contract():
    check_layer_contract(RpnHead(2, 8), (_pyramid(),), [(2, 512)] + [(2, 128), (2, 32), (2, 8)] + [(2, 512, 4), (2, 128, 4), (2, 32, 4), (2, 8, 4)])


def test_roi_align_contract():
    check_layer_contract(MultiLevelRoiAlign(output_size=3, canonical_size=16.0, canonical_level=3), (_pyramid(), _boxes(2, 5)), [(2, 5, 3, 3, 8)])


def test_roi_box_head_contract():
    pooled = tf.constant(RNG.normal(size=(2, 5, 3, 3, 8)), tf.float32)
    check_layer_contract(RoiBoxHead(2, 16), (pooled,), [(2, 5, 3), (2, 5, 2, 4)])


def test_proposal_generator_contract_and_padding():
    anchors = anchor_boxes(64, sizes=(8, 16), strides=(4, 8))
    logits = [tf.constant(RNG.normal(size=(2, len(a))), tf.float32) for a in anchors]
    deltas = [tf.constant(RNG.normal(0, 0.1, size=(2, len(a), 4)), tf.float32) for a in anchors]
    layer = ProposalGenerator(image_size=64, pre_nms_top_k_test=50, post_nms_top_k_test=300)
    check_layer_contract(layer, (anchors, logits, deltas), [(2, 300, 4), (2, 300)])
    proposals, scores = layer(anchors, logits, deltas)
    real = scores.numpy() >= 0
    assert 0 < real.sum(axis=1).min() and real.sum(axis=1).max() <= 100, "at most 2 levels x 50 survive"
    assert proposals.numpy()[real].min() >= 0 and proposals.numpy()[real].max() <= 64
    assert np.all(np.diff(scores.numpy(), axis=1) <= 1e-6), "sorted by score"


def test_postprocess_contract_and_class_ids():
    proposals = tf.constant([[[10.0, 10, 30, 30], [50, 50, 60, 60], [-1, -1, -1, -1]]])
    logits = tf.constant([[[0.0, 9, 0], [0, 0, 9], [0, 9, 0]]])
    layer = DetectionPostprocess(image_size=64, max_detections=4)
    check_layer_contract(layer, (proposals, logits, tf.zeros([1, 3, 2, 4])), [(1, 4, 4), (1, 4), (1,), (1, 4)])  # sorted keys: boxes, classes, num_detections, scores
    out = layer(proposals, logits, tf.zeros([1, 3, 2, 4]))
    assert int(out["num_detections"][0]) == 2, "the padded proposal is dropped"
    np.testing.assert_allclose(out["boxes"][0, :2].numpy(), [[10, 10, 30, 30], [50, 50, 60, 60]], atol=1e-4)
    np.testing.assert_array_equal(out["classes"][0, :2].numpy(), [0, 1])


@pytest.mark.parametrize(
    "settings, expected_num",
    [({}, 3), ({"agnostic_nms_iou": 0.2}, 2), ({"containment_threshold": 0.9}, 1), ({"agnostic_nms_iou": 0.2, "containment_threshold": 0.9}, 1)],
)
def test_postprocess_class_agnostic_stage(settings, expected_num):
    # One proposal that both classes claim (scores 0.52, 0.47), and a lower-scoring (0.45) small box
    # nested in it: per-class NMS keeps all three; IoU 0.2 drops the second class only (the nested
    # box has IoU 0.02); containment drops both (each lies inside the best box).
    proposals = tf.constant([[[10.0, 10, 40, 40], [20, 20, 24, 24]]])
    logits = tf.constant([[[0.0, 5, 4.9], [0, -0.2, -4]]])
    layer = DetectionPostprocess(image_size=64, max_detections=4, **settings)
    check_layer_contract(layer, (proposals, logits, tf.zeros([1, 2, 2, 4])), [(1, 4, 4), (1, 4), (1,), (1, 4)])
    assert {k: layer.get_config()[k] for k in settings} == settings
    out = layer(proposals, logits, tf.zeros([1, 2, 2, 4]))
    assert int(out["num_detections"][0]) == expected_num
    assert out["classes"][0, 0].numpy() == 0 and not out["scores"][0, expected_num:].numpy().any()


def test_postprocess_box_voting_moves_only_the_box():
    # Two proposals on one clump (IoU 0.82), deltas zero: the NMS stages keep one box, and voting
    # makes it the mean of the four class boxes (all above the score threshold), weighted by score ** 8.
    proposals = tf.constant([[[10.0, 10, 30, 30], [12, 10, 32, 30]]])
    logits = tf.constant([[[0.0, 3, 2.9], [0, 2, 0]]])
    plain = DetectionPostprocess(image_size=64, max_detections=4, agnostic_nms_iou=0.2)(proposals, logits, tf.zeros([1, 2, 2, 4]))
    layer = DetectionPostprocess(image_size=64, max_detections=4, agnostic_nms_iou=0.2, box_voting_iou=0.5)
    assert layer.get_config()["box_voting_iou"] == 0.5
    voted = layer(proposals, logits, tf.zeros([1, 2, 2, 4]))
    class_scores = tf.nn.softmax(logits)[0, :, 1:].numpy().ravel() ** 8
    voters = np.array([[10, 10, 30, 30], [10, 10, 30, 30], [12, 10, 32, 30], [12, 10, 32, 30]])
    np.testing.assert_allclose(voted["boxes"][0, 0].numpy(), class_scores @ voters / class_scores.sum(), atol=1e-4)
    assert int(voted["num_detections"][0]) == int(plain["num_detections"][0]) == 1
    np.testing.assert_array_equal(voted["scores"].numpy(), plain["scores"].numpy())


def test_postprocess_shares_sides_after_voting_and_clips():
    # Two clumps of sides 10 and 40 near the image edge, deltas zero: voting leaves each box (its
    # two class boxes coincide) and sharing moves both sides halfway to their score ** 8-weighted
    # mean in log side, about their centres; the grown box is clipped to the 64-px image.
    proposals = tf.constant([[[0.0, 0, 10, 10], [20, 20, 60, 60]]])
    logits = tf.constant([[[0.0, 3, 0], [0, 3, 0]]])
    settings = dict(image_size=64, max_detections=4, agnostic_nms_iou=0.2, box_voting_iou=0.5)
    voted = DetectionPostprocess(**settings)(proposals, logits, tf.zeros([1, 2, 2, 4]))
    layer = DetectionPostprocess(**settings, side_sharing=0.5)
    assert layer.get_config()["side_sharing"] == 0.5
    shared = layer(proposals, logits, tf.zeros([1, 2, 2, 4]))
    np.testing.assert_allclose(voted["boxes"][0, :2].numpy(), [[0, 0, 10, 10], [20, 20, 60, 60]], atol=1e-4)
    # Equal scores: the mean side is 20; 10 -> 10 * 2 ** 0.5 about (5, 5), clipped at 0; 40 -> 40 / 2 ** 0.5.
    grown, shrunk = 5 * 2**0.5, 20 / 2**0.5
    np.testing.assert_allclose(
        np.sort(shared["boxes"][0, :2].numpy(), axis=0),
        np.sort([[0, 0, 5 + grown, 5 + grown], [40 - shrunk, 40 - shrunk, 40 + shrunk, 40 + shrunk]], axis=0),
        atol=1e-3,
    )
    for key in ("scores", "classes", "num_detections"):
        np.testing.assert_array_equal(shared[key].numpy(), voted[key].numpy())


def test_postprocess_for_a_detector_config_and_its_refine_stage():
    config = smoke(agnostic_nms_iou=0.3, containment_threshold=0.8, box_voting_iou=0.6, side_sharing=0.25)
    layer_config = DetectionPostprocess.for_detector(config).get_config()
    for field in (*POSTPROCESS_FIELDS, "image_size"):
        assert layer_config[field] == getattr(config, field), field
    assert tuple(layer_config["box_weights"]) == tuple(config.roi_box_weights)
    # Voting needs the boxes from before suppression: a caller without them is told, not skipped.
    detections = {"boxes": tf.constant([[[0.0, 0, 10, 10]]]), "scores": tf.constant([[0.9]]),
                  "classes": tf.constant([[0]]), "num_detections": tf.constant([1])}
    with pytest.raises(ValueError, match="box_voting_iou is set but no candidate boxes"):
        DetectionPostprocess(image_size=64, box_voting_iou=0.5).refine(detections)


def test_layers_run_in_tf_data_map():
    layer = DetectionPostprocess(image_size=64, max_detections=4, agnostic_nms_iou=0.2, containment_threshold=0.9)
    ds = tf.data.Dataset.from_tensors((tf.constant([[[1.0, 1, 9, 9]]]), tf.constant([[[0.0, 5, 0]]]), tf.zeros([1, 1, 2, 4]))).map(layer)
    assert int(next(iter(ds))["num_detections"][0]) == 1


def _box_layer_outputs(feature_dtype):
    """Anchors, proposals, pooled features and detections from fixed inputs, the features in `feature_dtype`."""
    rng = np.random.default_rng(1)
    # Non-square anchors have corners that bfloat16 rounds.
    anchors = anchor_boxes(64, sizes=(8, 16), strides=(4, 8), aspect_ratios=(0.5, 2.0))
    logits = [tf.constant(rng.normal(size=(2, len(a))), tf.float32) for a in anchors]
    deltas = [tf.constant(rng.normal(0, 0.1, size=(2, len(a), 4)), tf.float32) for a in anchors]
    proposals, scores = ProposalGenerator(image_size=64, pre_nms_top_k_test=50, post_nms_top_k_test=20)(anchors, logits, deltas)
    # Values that bfloat16 holds exactly: cast to either dtype, the pooled numbers must agree.
    pyramid = [tf.cast(tf.cast(rng.normal(size=(2, s, s, 8)), tf.bfloat16), feature_dtype) for s in (16, 8)]
    pooled = MultiLevelRoiAlign(output_size=3, canonical_size=16.0, canonical_level=3)(pyramid, proposals)
    class_logits = tf.constant(rng.normal(0, 3, size=(2, 20, 3)), tf.float32)
    box_deltas = tf.constant(rng.normal(0, 0.1, size=(2, 20, 2, 4)), tf.float32)
    detections = DetectionPostprocess(image_size=64, max_detections=8, score_threshold=0.0)(proposals, class_logits, box_deltas)
    return {"anchors": np.concatenate(anchors), "proposals": proposals, "scores": scores, "pooled": pooled, **detections}


def test_box_layers_give_their_float32_results_under_mixed_bfloat16(global_dtype_policy):
    expected = _box_layer_outputs(tf.float32)
    global_dtype_policy("mixed_bfloat16")
    mixed = _box_layer_outputs(tf.bfloat16)
    for key, value in expected.items():
        assert np.asarray(mixed[key]).dtype == np.asarray(value).dtype, key
        np.testing.assert_array_equal(np.asarray(mixed[key]), np.asarray(value), err_msg=key)
    assert expected["proposals"].dtype == expected["pooled"].dtype == expected["boxes"].dtype == tf.float32
    assert int(tf.reduce_sum(expected["num_detections"])) > 0


def test_heads_compute_in_the_mixed_dtype_and_return_float32(global_dtype_policy):
    global_dtype_policy("mixed_bfloat16")
    rpn, box_head = RpnHead(2, 8), RoiBoxHead(2, 16)
    logits, deltas = rpn(_pyramid())
    class_logits, box_deltas = box_head(tf.constant(RNG.normal(size=(2, 5, 3, 3, 8)), tf.float32))
    assert rpn.conv.compute_dtype == box_head.fc2.compute_dtype == "bfloat16"
    assert {t.dtype for t in logits + deltas + [class_logits, box_deltas]} == {tf.float32}
    assert {v.dtype for v in rpn.weights + box_head.weights} == {"float32"}


@pytest.mark.parametrize("bad", [tf.zeros([2, 5, 4]), tf.zeros([2, 5, 3, 3])])
def test_roi_box_head_rejects_bad_shapes(bad):
    with pytest.raises(ValueError, match="RoiBoxHead expects"):
        RoiBoxHead(2, 16)(bad)


@pytest.mark.parametrize("training", [True, False])
def test_proposal_generator_matches_torchvision_filter_proposals(training):
    import torch
    from torchvision.models.detection.rpn import RegionProposalNetwork

    rng = np.random.default_rng(3)
    anchors = anchor_boxes(64, sizes=(8, 16, 32), strides=(4, 8, 16))
    logits = [tf.constant(rng.normal(0, 2, size=(2, len(a))), tf.float32) for a in anchors]
    # Wide deltas push some boxes off the image: clipping and dropping near-empty boxes count too.
    deltas = [tf.constant(rng.normal(0, 1.5, size=(2, len(a), 4)), tf.float32) for a in anchors]
    layer = ProposalGenerator(
        image_size=64, nms_iou=0.6, pre_nms_top_k_train=120, post_nms_top_k_train=90, pre_nms_top_k_test=60, post_nms_top_k_test=40
    )
    proposals, scores = (x.numpy() for x in layer(anchors, logits, deltas, training=training))

    reference = RegionProposalNetwork(
        None, None, 0.7, 0.3, 256, 0.5,
        pre_nms_top_n={"training": 120, "testing": 60}, post_nms_top_n={"training": 90, "testing": 40}, nms_thresh=0.6,
    ).train(training)
    decoded = tf.concat([decode_boxes(tf.constant(a)[tf.newaxis], d) for a, d in zip(anchors, deltas)], axis=1).numpy()
    expected_boxes, expected_scores = reference.filter_proposals(
        torch.from_numpy(decoded[..., [1, 0, 3, 2]]), torch.from_numpy(tf.concat(logits, 1).numpy()),
        [(64, 64)] * 2, [len(a) for a in anchors],
    )
    for image in range(2):
        count = len(expected_scores[image])
        assert count > 0 and (scores[image] >= 0).sum() == count
        np.testing.assert_allclose(scores[image, :count], expected_scores[image].numpy(), rtol=1e-6)
        np.testing.assert_allclose(proposals[image, :count], expected_boxes[image].numpy()[:, [1, 0, 3, 2]], atol=1e-4)
        assert np.all(proposals[image, count:] == -1) and np.all(scores[image, count:] == -1)
