"""Faster R-CNN with FPN for giant star-forming clumps.

Shape shorthand: B images, S image side, L pyramid levels, N anchors (all levels), M padded
ground-truth boxes (`max_clumps`), P proposals, R sampled ROIs per image, K foreground classes,
D detections. Inside the model class 0 is background and dataset label k is class k + 1
(`conventions.to_model_class`).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from gsfc_tf import conventions
from gsfc_tf.backbones import build_backbone
from gsfc_tf.config import DetectorConfig
from gsfc_tf.layers import DetectionPostprocess, FeaturePyramid, MultiLevelRoiAlign, ProposalGenerator, RoiBoxHead, RpnHead
from gsfc_tf.ops import anchor_boxes, box_iou, encode_boxes, match_boxes, roi_losses, rpn_losses, sample_balanced

__all__ = ["FasterRCNN", "LOSS_NAMES", "POSTPROCESS_FIELDS", "build_detector", "with_postprocess"]

LOSS_NAMES = ("rpn_objectness", "rpn_box", "roi_class", "roi_box")
# The `DetectorConfig` fields that only the postprocess layer reads: changing them needs no retraining.
POSTPROCESS_FIELDS = ("score_threshold", "nms_iou", "max_detections", "agnostic_nms_iou", "containment_threshold", "box_voting_iou", "side_sharing")


def build_detector(config: DetectorConfig) -> "FasterRCNN":
    """Builds the (already built, uncompiled) detector for `config`."""
    return FasterRCNN(config)


def with_postprocess(model: "FasterRCNN", **overrides) -> "FasterRCNN":
    """A copy of a trained detector with other post-processing settings (no retraining needed).

    E.g. to score one trained model at several `agnostic_nms_iou` or `containment_threshold` values.

    Args:
        model: a `FasterRCNN`; it is left unchanged.
        **overrides: new values of `POSTPROCESS_FIELDS`.

    Returns:
        A new `FasterRCNN` holding copies of `model`'s weights, its config updated.

    Raises:
        ValueError: a key outside `POSTPROCESS_FIELDS`, or an invalid value.
    """
    others = sorted(set(overrides) - set(POSTPROCESS_FIELDS))
    if others:
        raise ValueError(f"with_postprocess changes only {', '.join(POSTPROCESS_FIELDS)}; got {', '.join(others)}.")
    copy = FasterRCNN(dataclasses.replace(model.detector_config, **overrides), name=model.name)
    copy.set_weights(model.get_weights())
    return copy


@keras.saving.register_keras_serializable(package="gsfc_tf")
class FasterRCNN(keras.Model):
    """backbone → FPN → RPN → proposals → multilevel ROI align → box head → postprocess.

    `fit` takes `(images, targets)`: images float32 [B, S, S, 3] in [0, 1]; targets
    `{"boxes_yxyx": float32 [B, M, 4] pixels, "labels": int32 [B, M] in {0, 1}}`, padded with -1.
    `predict` / `call` return `boxes` [B, D, 4] (yxyx pixels, S frame), `scores` [B, D],
    `classes` [B, D] (dataset ids), `num_detections` [B].
    """

    def __init__(self, config: DetectorConfig, *, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.detector_config = config
        size = config.image_size
        self.backbone = build_backbone(
            config.backbone,
            weights=config.backbone_weights,
            input_shape=(size, size, 3),
            trainable_layers=config.trainable_backbone_layers,
        )
        self.fpn = FeaturePyramid(config.fpn_channels, min_level=config.min_level, max_level=config.max_level, name="fpn")
        self.rpn_head = RpnHead(config.num_anchors_per_cell, config.fpn_channels, name="rpn_head")
        self.proposal_generator = ProposalGenerator(
            image_size=size,
            nms_iou=config.rpn_nms_iou,
            pre_nms_top_k_train=config.rpn_pre_nms_top_k_train,
            post_nms_top_k_train=config.rpn_post_nms_top_k_train,
            pre_nms_top_k_test=config.rpn_pre_nms_top_k_test,
            post_nms_top_k_test=config.rpn_post_nms_top_k_test,
            name="proposals",
        )
        self.roi_align = MultiLevelRoiAlign(
            output_size=config.roi_pool_size,
            sampling_ratio=config.roi_sampling_ratio,
            min_level=config.min_level,
            canonical_size=config.roi_canonical_size,
            canonical_level=config.roi_canonical_level,
            name="roi_align",
        )
        self.box_head = RoiBoxHead(config.num_classes, config.head_dim, name="box_head")
        self.postprocess = DetectionPostprocess.for_detector(config, name="postprocess")
        self.anchors_per_level = anchor_boxes(
            size,
            sizes=config.anchor_sizes,
            strides=tuple(2**level for level in range(config.min_level, config.max_level + 1)),
            scales=config.anchor_scales,
            aspect_ratios=config.anchor_aspect_ratios,
        )
        self.anchors_yxyx = np.concatenate(self.anchors_per_level, axis=0)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_trackers = [keras.metrics.Mean(name=name) for name in LOSS_NAMES + ("loss",)]
        self.build((None, size, size, 3))

    def build(self, input_shape):
        # Running the sub-layers once on zeros creates every variable eagerly, so the custom
        # train_step and `.keras` loading find a fully built model.
        pyramid = self.fpn(self.backbone(tf.zeros((1,) + tuple(input_shape[1:]))))
        self.rpn_head(pyramid)
        self.box_head(self.roi_align(pyramid, tf.zeros((1, 1, 4))))
        self.built = True

    def compile(self, optimizer="adam", **kwargs):
        kwargs.setdefault("jit_compile", self.detector_config.jit_compile)
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        # Keras skips re-compiling models that override `compile`; ours only sets a default.
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return self.loss_trackers

    def _proposals(self, objectness_logits, deltas, training):
        """Proposals [B, P, 4]; padded slots are all -1 (no gradient flows into proposals)."""
        proposals, _ = self.proposal_generator(
            self.anchors_per_level,
            [tf.stop_gradient(x) for x in objectness_logits],
            [tf.stop_gradient(x) for x in deltas],
            training=training,
        )
        return proposals

    def call(self, images, training=False):
        pyramid = self.fpn(self.backbone(images, training=training))
        objectness_logits, deltas = self.rpn_head(pyramid)
        proposals = self._proposals(objectness_logits, deltas, training)
        class_logits, box_deltas = self.box_head(self.roi_align(pyramid, proposals))
        return self.postprocess(proposals, class_logits, box_deltas)

    def compute_losses(self, images, targets, training: bool = True) -> dict:
        """Per-replica mean losses of one forward pass.

        Args:
            images: float32 [B, S, S, 3] in [0, 1].
            targets: dict with `boxes_yxyx` float32 [B, M, 4] and `labels` int32 [B, M], -1 padded.
            training: batch-norm mode and train/test proposal counts.

        Returns:
            dict of scalar float32 tensors named as `LOSS_NAMES`.
        """
        cfg = self.detector_config
        gt_labels = tf.cast(targets["labels"], tf.int32)
        gt_boxes_yxyx = tf.cast(targets["boxes_yxyx"], tf.float32)
        if gt_boxes_yxyx.shape.rank != 3 or gt_labels.shape.rank != 2:
            raise ValueError(f"Expected boxes [B, M, 4] and labels [B, M], got {gt_boxes_yxyx.shape} and {gt_labels.shape}.")
        gt_boxes_yxyx = tf.where(gt_labels[..., tf.newaxis] >= 0, gt_boxes_yxyx, -1.0)

        pyramid = self.fpn(self.backbone(images, training=training))
        level_logits, level_deltas = self.rpn_head(pyramid)
        losses = self._rpn_losses(tf.concat(level_logits, 1), tf.concat(level_deltas, 1), gt_boxes_yxyx)

        # Ground truth joins the proposals so the head always sees positives (torchvision does too).
        proposals = self._proposals(level_logits, level_deltas, training)
        candidates = tf.concat([proposals, gt_boxes_yxyx], axis=1)
        matched_gt, labels = match_boxes(
            box_iou(candidates, gt_boxes_yxyx), fg_threshold=cfg.roi_fg_iou, bg_threshold=cfg.roi_fg_iou, allow_low_quality=False
        )
        labels = tf.where(tf.reduce_max(candidates, axis=-1) >= 0.0, labels, -1)
        noise = keras.random.uniform(tf.shape(labels), seed=self.seed_generator)
        indices, valid = sample_balanced(
            labels, noise, num_samples=cfg.roi_samples_per_image, positive_fraction=cfg.roi_positive_fraction
        )
        rois_yxyx = tf.gather(candidates, indices, batch_dims=1)
        roi_gt = tf.gather(matched_gt, indices, batch_dims=1)
        positive = tf.equal(tf.gather(labels, indices, batch_dims=1), 1)
        gt_classes = tf.where(
            positive, conventions.to_model_class(tf.gather(gt_labels, roi_gt, batch_dims=1)), conventions.BACKGROUND_CLASS
        )
        gt_deltas = encode_boxes(rois_yxyx, tf.gather(gt_boxes_yxyx, roi_gt, batch_dims=1), weights=cfg.roi_box_weights)
        gt_deltas = tf.where(positive[..., tf.newaxis], gt_deltas, 0.0)
        class_logits, box_deltas = self.box_head(self.roi_align(pyramid, rois_yxyx))
        losses.update(roi_losses(class_logits, box_deltas, gt_classes, gt_deltas, valid))
        return losses

    def _rpn_losses(self, objectness_logits, deltas, gt_boxes_yxyx):
        cfg = self.detector_config
        anchors_yxyx = tf.constant(self.anchors_yxyx)
        matched_gt, labels = match_boxes(
            box_iou(anchors_yxyx, gt_boxes_yxyx), fg_threshold=cfg.rpn_fg_iou, bg_threshold=cfg.rpn_bg_iou, allow_low_quality=True
        )
        positive = tf.equal(labels, 1)
        gt_deltas = encode_boxes(anchors_yxyx, tf.gather(gt_boxes_yxyx, matched_gt, batch_dims=1))
        # Unmatched anchors may point at padded ground truth; zero their (unused) targets.
        gt_deltas = tf.where(positive[..., tf.newaxis], gt_deltas, 0.0)
        noise = keras.random.uniform(tf.shape(labels), seed=self.seed_generator)
        indices, valid = sample_balanced(
            labels, noise, num_samples=cfg.rpn_samples_per_image, positive_fraction=cfg.rpn_positive_fraction
        )
        batch_index = tf.broadcast_to(tf.range(tf.shape(indices)[0])[:, tf.newaxis], tf.shape(indices))
        sample_weights = tf.scatter_nd(
            tf.stack([batch_index, indices], axis=-1), tf.cast(valid, tf.float32), tf.shape(labels)
        )
        return rpn_losses(objectness_logits, deltas, tf.cast(positive, tf.float32), gt_deltas, sample_weights)

    def _record(self, losses):
        total = tf.add_n([losses[name] for name in LOSS_NAMES])
        for tracker, value in zip(self.loss_trackers, [losses[name] for name in LOSS_NAMES] + [total]):
            tracker.update_state(value)
        return total

    def losses_and_gradients(
        self, images, targets, *, weight_decay: float = 0.0, num_replicas: int = 1, scale_loss=None
    ) -> tuple[dict, list]:
        """One replica's losses and its share of the global-batch gradient: the one training step.

        `train_step` (Keras `fit`) and `trainer.train`'s loop both take their gradients here.
        The losses are means over the replica's sampled anchors and ROIs (torchvision's
        normalisation); dividing by the replica count makes the all-reduced (summed) gradient the
        mean of the replicas' gradients, as DDP's averaging all-reduce gives torchvision. The
        coupled L2 term (`weight_decay * w` in the gradient) is what torch.optim.Adam(weight_decay=...)
        does in the authors' setup.

        Args:
            images: float32 [B, S, S, 3] in [0, 1].
            targets: dict with `boxes_yxyx` float32 [B, M, 4] and `labels` int32 [B, M], -1 padded.
            weight_decay: the coupled L2 coefficient (a Python float); 0 adds no term.
            num_replicas: how many replicas' gradients are summed into one update.
            scale_loss: applied to the objective before differentiating (an optimizer's
                `scale_loss`, which scales under `LossScaleOptimizer`); None: not scaled.

        Returns:
            (losses: `LOSS_NAMES` plus `loss`, their sum, without L2; gradients in
            `trainable_variables` order).
        """
        with tf.GradientTape() as tape:
            losses = self.compute_losses(images, targets, training=True)
            total = tf.add_n([losses[name] for name in LOSS_NAMES])
            objective = total
            if weight_decay:
                l2 = tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in self.trainable_variables])
                objective = total + 0.5 * weight_decay * l2
            objective = objective / num_replicas
            if scale_loss is not None:
                objective = scale_loss(objective)
        return {**losses, "loss": total}, tape.gradient(objective, self.trainable_variables)

    def train_step(self, data):
        """`fit`'s step: the losses alone, without the trainer's coupled L2 (`weight_decay`)."""
        images, targets = data[0], data[1]
        losses, gradients = self.losses_and_gradients(
            images,
            targets,
            num_replicas=tf.distribute.get_strategy().num_replicas_in_sync,
            scale_loss=self.optimizer.scale_loss,
        )
        self.optimizer.apply(gradients, self.trainable_variables)
        self._record(losses)
        return {tracker.name: tracker.result() for tracker in self.loss_trackers}

    def test_step(self, data):
        images, targets = data[0], data[1]
        self._record(self.compute_losses(images, targets, training=False))
        return {tracker.name: tracker.result() for tracker in self.loss_trackers}

    def predict_step(self, data):
        images = data[0] if isinstance(data, (tuple, list)) else data
        return self(images, training=False)

    def get_config(self):
        return {"name": self.name, "config": dataclasses.asdict(self.detector_config)}

    @classmethod
    def from_config(cls, config):
        fields = {f.name: f for f in dataclasses.fields(DetectorConfig)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in config["config"].items() if k in fields}
        return cls(DetectorConfig(**values), name=config.get("name"))
