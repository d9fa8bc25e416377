"""Box head: two fully connected layers, class logits and class-specific box deltas.

Shape shorthand: B images, R ROIs per image, P bins per side, F channels, K foreground classes.
"""

from __future__ import annotations

import keras

__all__ = ["RoiBoxHead"]


@keras.saving.register_keras_serializable(package="gsfc_tf")
class RoiBoxHead(keras.layers.Layer):
    """torchvision's TwoMLPHead + FastRCNNPredictor, deltas for foreground classes only.

    The hidden layers compute in the layer's (possibly mixed) dtype; the two output layers are
    float32, so losses and decoding get float32 logits and deltas under mixed precision.

    Call args:
        pooled: [B, R, P, P, F].

    Returns:
        `(class_logits, deltas)`: float32 [B, R, K + 1] (0 = background) and [B, R, K, 4].
    """

    def __init__(self, num_classes: int, hidden_dim: int = 1024, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.fc1 = keras.layers.Dense(hidden_dim, activation="relu", name="fc1")
        self.fc2 = keras.layers.Dense(hidden_dim, activation="relu", name="fc2")
        self.classifier = keras.layers.Dense(
            num_classes + 1,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            dtype="float32",
            name="class_logits",
        )
        self.box_regressor = keras.layers.Dense(
            4 * num_classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
            dtype="float32",
            name="box_deltas",
        )

    def build(self, input_shape):
        if len(input_shape) != 5:
            raise ValueError(f"RoiBoxHead expects [B, R, P, P, F], got {input_shape}.")
        flat = input_shape[2] * input_shape[3] * input_shape[4]
        self.fc1.build((None, flat))
        self.fc2.build((None, self.hidden_dim))
        self.classifier.build((None, self.hidden_dim))
        self.box_regressor.build((None, self.hidden_dim))

    def call(self, pooled):
        batch, rois = keras.ops.shape(pooled)[0], keras.ops.shape(pooled)[1]
        x = keras.ops.reshape(pooled, (batch * rois, -1))
        x = self.fc2(self.fc1(x))
        class_logits = keras.ops.reshape(self.classifier(x), (batch, rois, self.num_classes + 1))
        deltas = keras.ops.reshape(self.box_regressor(x), (batch, rois, self.num_classes, 4))
        return class_logits, deltas

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "hidden_dim": self.hidden_dim}
