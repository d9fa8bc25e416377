"""Region proposal network: a shared head over pyramid levels and the proposal layer.

Shape shorthand: B images, L levels, Hl x Wl cells, A anchors per cell, Nl = Hl * Wl * A
anchors at level l, N = sum Nl, P proposals per image.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from gsfc_tf.ops.boxes import clip_boxes, decode_boxes

__all__ = ["ProposalGenerator", "RpnHead"]


@keras.saving.register_keras_serializable(package="gsfc_tf")
class RpnHead(keras.layers.Layer):
    """3x3 conv + ReLU shared across levels, then 1x1 objectness and box-delta convs.

    Call args:
        features: list of L float32 [B, Hl, Wl, F].

    Returns:
        `(objectness_logits, deltas)`: lists of L float32 [B, Nl] and [B, Nl, 4].
    """

    def __init__(self, num_anchors: int, channels: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.num_anchors = num_anchors
        self.channels = channels
        self.conv = keras.layers.Conv2D(channels, 3, padding="same", activation="relu", name="conv")
        init = keras.initializers.RandomNormal(stddev=0.01)
        self.objectness = keras.layers.Conv2D(num_anchors, 1, kernel_initializer=init, name="objectness")
        self.box_deltas = keras.layers.Conv2D(4 * num_anchors, 1, kernel_initializer=init, name="box_deltas")

    def build(self, input_shape):
        shape = tuple(input_shape[0])
        self.conv.build(shape)
        hidden = shape[:-1] + (self.channels,)
        self.objectness.build(hidden)
        self.box_deltas.build(hidden)

    def call(self, features):
        logits, deltas = [], []
        for x in features:
            hidden = self.conv(x)
            # Static anchor counts (the batch may be unknown) keep top-k sizes static downstream.
            count = x.shape[1] * x.shape[2] * self.num_anchors
            logits.append(keras.ops.reshape(self.objectness(hidden), (-1, count)))
            deltas.append(keras.ops.reshape(self.box_deltas(hidden), (-1, count, 4)))
        return logits, deltas

    def get_config(self):
        return {**super().get_config(), "num_anchors": self.num_anchors, "channels": self.channels}


@keras.saving.register_keras_serializable(package="gsfc_tf")
class ProposalGenerator(keras.layers.Layer):
    """Decodes RPN deltas, clips, then per-level top-k, NMS and a global top-k (KerasCV ROIGenerator).

    Call args:
        anchors: list of L float32 [Nl, 4] `yxyx` pixels.
        objectness_logits: list of L float32 [B, Nl].
        deltas: list of L float32 [B, Nl, 4].
        training: picks the train or test top-k.

    Returns:
        `(proposals_yxyx, scores)`: float32 [B, P, 4] and [B, P]; padded slots have score -1
        (boxes there are meaningless and must be masked by the caller).
    """

    def __init__(
        self,
        *,
        image_size: int,
        nms_iou: float = 0.7,
        pre_nms_top_k_train: int = 2000,
        post_nms_top_k_train: int = 1000,
        pre_nms_top_k_test: int = 1000,
        post_nms_top_k_test: int = 1000,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.nms_iou = nms_iou
        self.pre_nms_top_k_train = pre_nms_top_k_train
        self.post_nms_top_k_train = post_nms_top_k_train
        self.pre_nms_top_k_test = pre_nms_top_k_test
        self.post_nms_top_k_test = post_nms_top_k_test
        # Imported here: keras_cv imports tensorflow_datasets, which importing gsfc_tf.trainer
        # must not load.
        import keras_cv

        self.generator = keras_cv.layers.ROIGenerator(
            bounding_box_format="yxyx",
            pre_nms_topk_train=pre_nms_top_k_train,
            nms_score_threshold_train=0.0,
            nms_iou_threshold_train=nms_iou,
            post_nms_topk_train=post_nms_top_k_train,
            pre_nms_topk_test=pre_nms_top_k_test,
            nms_score_threshold_test=0.0,
            nms_iou_threshold_test=nms_iou,
            post_nms_topk_test=post_nms_top_k_test,
        )

    def call(self, anchors, objectness_logits, deltas, training=False):
        if not len(anchors) == len(objectness_logits) == len(deltas):
            raise ValueError(f"Need one anchor set per level, got {len(anchors)}, {len(objectness_logits)}, {len(deltas)}.")
        boxes = {
            level: clip_boxes(decode_boxes(tf.convert_to_tensor(level_anchors)[tf.newaxis], level_deltas), self.image_size)
            for level, (level_anchors, level_deltas) in enumerate(zip(anchors, deltas))
        }
        scores = {level: tf.sigmoid(logits) for level, logits in enumerate(objectness_logits)}
        proposals, proposal_scores = self.generator(boxes, scores, training=training)
        post_nms = self.post_nms_top_k_train if training else self.post_nms_top_k_test
        # ROIGenerator returns min(post_nms, candidates) rows; pad to the static count.
        missing = post_nms - tf.shape(proposal_scores)[1]
        proposals = tf.pad(proposals, [[0, 0], [0, missing], [0, 0]], constant_values=-1.0)
        proposal_scores = tf.pad(proposal_scores, [[0, 0], [0, missing]], constant_values=-1.0)
        batch = tf.shape(proposal_scores)[0]
        return tf.reshape(proposals, [batch, post_nms, 4]), tf.reshape(proposal_scores, [batch, post_nms])

    def get_config(self):
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "nms_iou": self.nms_iou,
            "pre_nms_top_k_train": self.pre_nms_top_k_train,
            "post_nms_top_k_train": self.post_nms_top_k_train,
            "pre_nms_top_k_test": self.pre_nms_top_k_test,
            "post_nms_top_k_test": self.post_nms_top_k_test,
        }
