"""Zoobot's EfficientNet-B0 encoder: timm's `efficientnet_b0` rebuilt layer for layer in Keras.

Zoobot publishes its encoders as timm (PyTorch) models, so this network must reproduce timm's
exactly, which `keras.applications.EfficientNetB0` does not: timm pads every convolution by
`k // 2` on all sides (Keras "same" pads stride-2 convolutions only at the bottom/right for
even inputs), uses BatchNorm eps 1e-5 (Keras 1e-3), and normalises nothing inside the network.
Like timm's forward (timm keeps mean/std in its data transforms) this model applies no
preprocessing: it gives timm's output for the same [0, 1] tensor. Zoobot's encoders are
trained on pixels / 255 without mean/std by default; a checkpoint fine-tuned with timm's
normalisation needs that applied to the images first.

Layer names are timm's module paths with "." replaced by "_" (`blocks.1.0.conv_pw` ->
`blocks_1_0_conv_pw`); `gsfc_tf.backbones.convert` relies on this to map a state dict.

Shape shorthand: B images, H x W input, C input channels (3, or 1 for greyscale encoders).
"""

from __future__ import annotations

import keras

from gsfc_tf.backbones import set_trainable_stages

__all__ = ["build_zoobot_efficientnet_b0", "conv_bn"]

_BN_EPSILON = 1e-5  # timm / PyTorch default
_BN_MOMENTUM = 0.9  # PyTorch's momentum=0.1 in Keras' convention
_SE_RATIO = 0.25  # of the block's input channels, as timm's SqueezeExcite
_STEM_CHANNELS = 32

# (repeats, kernel, first stride, expansion, output channels) of timm's efficientnet_b0 arch_def;
# stage 0 is the depthwise-separable block, the rest inverted residuals.
_B0_BLOCKS = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
# Layer-name prefixes of the stages C1..C5, in timm features_only's split (blocks 0, 1, 2, 4, 6).
_STAGES = (
    ("conv_stem", "bn1", "blocks_0_"),
    ("blocks_1_",),
    ("blocks_2_",),
    ("blocks_3_", "blocks_4_"),
    ("blocks_5_", "blocks_6_"),
)
_FEATURE_BLOCKS = {"C1": 0, "C2": 1, "C3": 2, "C4": 4, "C5": 6}


def conv_bn(
    x,
    *,
    filters: int | None,
    kernel_size: int,
    strides: int = 1,
    activation: str | None = None,
    conv_name: str,
    bn_name: str,
):
    """PyTorch-padded convolution (depthwise when `filters` is None), BatchNorm, activation.

    Args:
        x: `[B, H, W, C]` feature map.
        filters: output channels, or None for a depthwise convolution (C outputs).
        kernel_size: odd square kernel size k.
        strides: 1 or 2.
        activation: Keras activation name applied after BatchNorm, or None.
        conv_name: name of the convolution layer; `{bn_name}_act` names the activation.
        bn_name: name of the BatchNorm layer.

    Returns:
        `[B, H', W', filters or C]` with `H' = floor((H + 2 * (k // 2) - k) / strides) + 1`.
    """
    padding = "same"
    if strides > 1 and kernel_size > 1:
        # PyTorch pads k // 2 on every side; Keras "same" would shift stride-2 outputs by a pixel.
        x = keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{conv_name}_pad")(x)
        padding = "valid"
    if filters is None:
        x = keras.layers.DepthwiseConv2D(kernel_size, strides, padding=padding, use_bias=False, name=conv_name)(x)
    else:
        x = keras.layers.Conv2D(filters, kernel_size, strides, padding=padding, use_bias=False, name=conv_name)(x)
    x = keras.layers.BatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=bn_name)(x)
    if activation is not None:
        x = keras.layers.Activation(activation, name=f"{bn_name}_act")(x)
    return x


def _squeeze_excite(x, *, reduced_channels: int, name: str):
    """timm's SqueezeExcite: x * sigmoid(expand(silu(reduce(mean(x))))), with 1x1 convs."""
    channels = x.shape[-1]
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    s = keras.layers.Conv2D(reduced_channels, 1, activation="silu", name=f"{name}_conv_reduce")(s)
    s = keras.layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_conv_expand")(s)
    return keras.layers.Multiply(name=f"{name}_scale")([x, s])


def _block(x, *, kernel_size: int, strides: int, expansion: int, filters: int, name: str):
    """One timm DepthwiseSeparableConv (expansion 1) or InvertedResidual block."""
    in_channels = x.shape[-1]
    shortcut = x
    if expansion == 1:
        x = conv_bn(x, filters=None, kernel_size=kernel_size, strides=strides, activation="silu",
                    conv_name=f"{name}_conv_dw", bn_name=f"{name}_bn1")
        x = _squeeze_excite(x, reduced_channels=int(in_channels * _SE_RATIO), name=f"{name}_se")
        x = conv_bn(x, filters=filters, kernel_size=1, conv_name=f"{name}_conv_pw", bn_name=f"{name}_bn2")
    else:
        x = conv_bn(x, filters=in_channels * expansion, kernel_size=1, activation="silu",
                    conv_name=f"{name}_conv_pw", bn_name=f"{name}_bn1")
        x = conv_bn(x, filters=None, kernel_size=kernel_size, strides=strides, activation="silu",
                    conv_name=f"{name}_conv_dw", bn_name=f"{name}_bn2")
        x = _squeeze_excite(x, reduced_channels=int(in_channels * _SE_RATIO), name=f"{name}_se")
        x = conv_bn(x, filters=filters, kernel_size=1, conv_name=f"{name}_conv_pwl", bn_name=f"{name}_bn3")
    if strides == 1 and in_channels == filters:
        x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return x


def build_zoobot_efficientnet_b0(
    *,
    weights: str | None = None,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    trainable_layers: int | None = None,
) -> keras.Model:
    """timm `efficientnet_b0` (Zoobot's encoder) returning `C1`..`C5` like `features_only=True`.

    Args:
        weights: a `.weights.h5` file written by `gsfc-tf zoobot-weights`, or None (random).
        input_shape: `(H, W, C)` with C in {1, 3}; images are floats in [0, 1], unnormalised.
        trainable_layers: None (all), 0 (frozen, BN in inference mode) or N in 1..5: train the
            last N stages (C1 = stem + blocks 0, C2, C3 = blocks 1, 2, C4 = blocks 3-4, C5 = blocks 5-6).

    Returns:
        A `keras.Model` mapping `[B, H, W, C]` to `{"C1": [B, H/2, W/2, 16], "C2": [.., 24],
        "C3": [.., 40], "C4": [.., 112], "C5": [B, H/32, W/32, 320]}` (sizes rounded up).
    """
    if len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise ValueError(f"input_shape must be (H, W, 1) or (H, W, 3), got {input_shape}.")
    images = keras.Input(shape=input_shape, name="images")
    x = conv_bn(images, filters=_STEM_CHANNELS, kernel_size=3, strides=2, activation="silu",
                conv_name="conv_stem", bn_name="bn1")
    block_outputs = []
    for stage, (repeats, kernel_size, strides, expansion, filters) in enumerate(_B0_BLOCKS):
        for index in range(repeats):
            x = _block(x, kernel_size=kernel_size, strides=strides if index == 0 else 1, expansion=expansion,
                       filters=filters, name=f"blocks_{stage}_{index}")
        block_outputs.append(x)
    features = {level: block_outputs[stage] for level, stage in _FEATURE_BLOCKS.items()}
    model = keras.Model(images, features, name="zoobot_efficientnet_b0")
    if weights is not None:
        model.load_weights(weights)
    set_trainable_stages(model, _STAGES, trainable_layers)
    return model
