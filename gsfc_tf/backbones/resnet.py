"""ResNet50 backbones: ImageNet (`keras.applications`) and Zoobot's (timm `resnet50`).

The two networks differ, so each has its own builder:
- `resnet50` is `keras.applications.ResNet50` (the original caffe ResNet: stride 2 on each
  stage's first 1x1 convolution, BN eps 1.001e-5) for the paper's ImageNet comparison. Its
  weights expect caffe preprocessing (BGR, 0-255, ImageNet mean subtracted), done inside the
  model by `CaffePreprocessing`, so it takes [0, 1] RGB images like every backbone.
- `zoobot_resnet50` is timm's `resnet50` (ResNet v1.5: stride 2 on the 3x3 convolution,
  PyTorch symmetric padding, BN eps 1e-5) taking [0, 1] images unnormalised like Zoobot, with
  layer names from timm's module paths so `gsfc-tf zoobot-weights` can fill it.

Shape shorthand: B images, H x W input, C input channels.
"""

from __future__ import annotations

import keras

from gsfc_tf.backbones import set_trainable_stages
from gsfc_tf.backbones.efficientnet import conv_bn

__all__ = ["CaffePreprocessing", "build_resnet50", "build_zoobot_resnet50"]

# ImageNet channel means in BGR order on the 0-255 scale (keras.applications' "caffe" mode).
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_KERAS_FEATURES = ("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out")
_KERAS_STAGES = (("conv1_",), ("pool1_", "conv2_"), ("conv3_",), ("conv4_",), ("conv5_",))

# (blocks, bottleneck width, first stride) of timm resnet50's layer1..layer4; outputs are 4x width.
_TIMM_LAYERS = ((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2))
_TIMM_STAGES = (("conv1", "bn1"), ("maxpool", "layer1_"), ("layer2_",), ("layer3_",), ("layer4_",))


@keras.saving.register_keras_serializable(package="gsfc_tf")
class CaffePreprocessing(keras.layers.Layer):
    """Maps RGB images in [0, 1] to keras.applications' caffe input: BGR, 0-255, mean removed.

    Input `[B, H, W, 3]` float in [0, 1]; output `[B, H, W, 3]` float32.
    """

    def call(self, images):
        bgr = keras.ops.flip(keras.ops.cast(images, "float32"), axis=-1)
        return bgr * 255.0 - keras.ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype="float32")


def build_resnet50(
    *,
    weights: str | None = None,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    trainable_layers: int | None = None,
) -> keras.Model:
    """keras.applications ResNet50 features for the ImageNet baseline.

    Args:
        weights: `"imagenet"` (downloads; needs internet), a `.weights.h5` file saved from this
            model, or None (random).
        input_shape: `(H, W, 3)`; RGB floats in [0, 1] (caffe preprocessing is inside).
        trainable_layers: None (all), 0 (frozen, BN in inference mode) or N in 1..5: train the
            last N of the stages conv1, conv2_x..conv5_x.

    Returns:
        A `keras.Model` mapping `[B, H, W, 3]` to `C1`..`C5` with 64, 256, 512, 1024 and 2048
        channels at strides 2..32.
    """
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"resnet50 takes RGB input_shape (H, W, 3), got {input_shape}.")
    images = keras.Input(shape=input_shape, name="images")
    preprocessed = CaffePreprocessing(name="caffe_preprocessing")(images)
    resnet = keras.applications.ResNet50(
        include_top=False, weights="imagenet" if weights == "imagenet" else None, input_tensor=preprocessed
    )
    features = {f"C{level}": resnet.get_layer(name).output for level, name in enumerate(_KERAS_FEATURES, start=1)}
    model = keras.Model(images, features, name="resnet50")
    if weights not in (None, "imagenet"):
        model.load_weights(weights)
    set_trainable_stages(model, _KERAS_STAGES, trainable_layers)
    return model


def _bottleneck(x, *, width: int, strides: int, name: str):
    """timm's Bottleneck: 1x1 -> 3x3 (stride) -> 1x1 (4x width), plus a projected shortcut on block 0."""
    shortcut = x
    if strides != 1 or x.shape[-1] != 4 * width:
        shortcut = conv_bn(x, filters=4 * width, kernel_size=1, strides=strides,
                           conv_name=f"{name}_downsample_0", bn_name=f"{name}_downsample_1")
    x = conv_bn(x, filters=width, kernel_size=1, activation="relu", conv_name=f"{name}_conv1", bn_name=f"{name}_bn1")
    x = conv_bn(x, filters=width, kernel_size=3, strides=strides, activation="relu",
                conv_name=f"{name}_conv2", bn_name=f"{name}_bn2")
    x = conv_bn(x, filters=4 * width, kernel_size=1, conv_name=f"{name}_conv3", bn_name=f"{name}_bn3")
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_act3")(x)


def build_zoobot_resnet50(
    *,
    weights: str | None = None,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    trainable_layers: int | None = None,
) -> keras.Model:
    """timm `resnet50` (Zoobot's encoder) returning `C1`..`C5` like `features_only=True`.

    Args:
        weights: a `.weights.h5` file written by `gsfc-tf zoobot-weights`, or None (random).
        input_shape: `(H, W, C)` with C in {1, 3}; images are floats in [0, 1], unnormalised.
        trainable_layers: None (all), 0 (frozen, BN in inference mode) or N in 1..5: train the
            last N of the stages conv1, layer1..layer4.

    Returns:
        A `keras.Model` mapping `[B, H, W, C]` to `C1` (timm's `act1`, 64 channels, stride 2)
        and `C2`..`C5` (`layer1`..`layer4`: 256, 512, 1024, 2048 channels, strides 4..32).
    """
    if len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise ValueError(f"input_shape must be (H, W, 1) or (H, W, 3), got {input_shape}.")
    images = keras.Input(shape=input_shape, name="images")
    x = conv_bn(images, filters=64, kernel_size=7, strides=2, activation="relu", conv_name="conv1", bn_name="bn1")
    features = {"C1": x}
    # Zero padding equals PyTorch's -inf padding here: the inputs are ReLU outputs (>= 0).
    x = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
    for layer_index, (blocks, width, strides) in enumerate(_TIMM_LAYERS, start=1):
        for block in range(blocks):
            x = _bottleneck(x, width=width, strides=strides if block == 0 else 1, name=f"layer{layer_index}_{block}")
        features[f"C{layer_index + 1}"] = x
    model = keras.Model(images, features, name="zoobot_resnet50")
    if weights is not None:
        model.load_weights(weights)
    set_trainable_stages(model, _TIMM_STAGES, trainable_layers)
    return model
