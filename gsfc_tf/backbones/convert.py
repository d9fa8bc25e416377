"""`gsfc-tf zoobot-weights`: converts a Zoobot (timm) encoder checkpoint to Keras `.weights.h5`.

Sources: a Hugging Face id (`mwalmsley/zoobot-encoder-efficientnet_b0`, optionally prefixed
`hf_hub:`; needs internet), a `pytorch_model.bin` / `.pt` / `.pth` state dict, or a
`.safetensors` file. The state dict may be a full timm model (classifier head included), a
`features_only` one, a Lightning checkpoint (`state_dict`) or Zoobot's `encoder.`-prefixed one.
The architecture is read from the keys: `conv_stem.*` -> `zoobot_efficientnet_b0`,
`layer1.*` -> `zoobot_resnet50`.

Only torch (for `.bin`), safetensors and huggingface_hub are needed, never timm: timm loads
triton's native library, which crashes after TensorFlow. This module imports no TensorFlow;
`run` reads the checkpoint (importing torch) before building the Keras model.

Layout mapping (PyTorch -> Keras): conv `[O, I, kh, kw]` -> `[kh, kw, I, O]`; depthwise
`[C, 1, kh, kw]` -> `[kh, kw, C, 1]`; BatchNorm weight, bias, running mean/var -> gamma, beta,
moving mean/variance. A 3-channel stem converted for 1-channel input is summed over its input
channels (as timm's `adapt_input_conv`), so a greyscale image gives what timm gives for that
image repeated in R, G and B.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

__all__ = [
    "assign_state_dict",
    "configure_parser",
    "convert",
    "detect_backbone",
    "load_state_dict",
    "run",
]

_log = logging.getLogger(__name__)

# backbone -> (stem conv key, prefixes of the classification head that the features never use)
_ARCHITECTURES = {
    "zoobot_efficientnet_b0": ("conv_stem.weight", ("conv_head.", "bn2.", "classifier.")),
    "zoobot_resnet50": ("conv1.weight", ("fc.",)),
}
_TORCH_FILE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_HF_FILENAMES = ("model.safetensors", "pytorch_model.bin")


def load_state_dict(source: str) -> dict[str, np.ndarray]:
    """Reads a checkpoint into float32 numpy arrays keyed by timm parameter names.

    Args:
        source: a `.bin`/`.pt`/`.pth`/`.ckpt` or `.safetensors` path, or a Hugging Face model id.

    Returns:
        `{timm key: array}`, unwrapped from a `state_dict` entry and `module.` prefixes; if keys
        start with `encoder.` (Zoobot fine-tuning checkpoints), only those, without the prefix.

    Raises:
        ValueError: if the file is not a checkpoint, or `source` is neither a file nor an id.
    """
    path = Path(source)
    if not path.exists():
        path = _download_from_hub(source)
    if path.suffix not in (".safetensors", *_TORCH_FILE_SUFFIXES):
        raise ValueError(f"Unknown checkpoint type {path.suffix!r}; expected .safetensors or .bin/.pt/.pth/.ckpt.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            tensors = load_file(str(path))
        else:
            import torch

            tensors = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise assorted types for a malformed file
        raise ValueError(f"Cannot read {path} as a checkpoint: {error}") from error
    if isinstance(tensors, dict) and isinstance(tensors.get("state_dict"), dict):
        tensors = tensors["state_dict"]
    if not isinstance(tensors, dict) or not tensors:
        raise ValueError(f"{path} holds no state dict (found {type(tensors).__name__}).")
    tensors = {key.removeprefix("module."): value for key, value in tensors.items()}
    if any(key.startswith("encoder.") for key in tensors):
        # A Zoobot fine-tuning checkpoint: keep the encoder, drop its task head.
        tensors = {key.removeprefix("encoder."): value for key, value in tensors.items() if key.startswith("encoder.")}
    return {
        key: np.asarray(value.float().numpy() if hasattr(value, "float") else value, dtype=np.float32)
        for key, value in tensors.items()
    }


def _download_from_hub(model_id: str) -> Path:
    """Fetches a timm model's weights file from the Hugging Face hub (what timm's `hf_hub:` does)."""
    model_id = model_id.removeprefix("hf_hub:")
    if model_id.count("/") != 1:
        raise ValueError(f"{model_id!r} is neither an existing file nor a Hugging Face id like 'owner/name'.")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError

    for filename in _HF_FILENAMES:
        try:
            return Path(hf_hub_download(model_id, filename))
        except EntryNotFoundError:
            continue
    raise ValueError(f"Hugging Face repo {model_id!r} has none of {_HF_FILENAMES}.")


def detect_backbone(state_dict: dict[str, np.ndarray]) -> str:
    """Names the backbone whose stem key `state_dict` holds (see `_ARCHITECTURES`)."""
    for name, (stem_key, _) in _ARCHITECTURES.items():
        if stem_key in state_dict:
            return name
    raise ValueError(
        f"Not a timm efficientnet_b0 or resnet50 state dict: no {[stem for stem, _ in _ARCHITECTURES.values()]}; "
        f"first keys are {list(state_dict)[:5]}."
    )


def _keras_arrays(layer, prefix: str, state_dict: dict[str, np.ndarray], *, is_stem: bool) -> list[np.ndarray]:
    """The PyTorch tensors of module `prefix` in Keras layout, in `layer.weights` order."""
    import keras

    def get(name):
        key = f"{prefix}.{name}"
        if key not in state_dict:
            raise ValueError(f"Checkpoint lacks {key!r}, needed by Keras layer {layer.name!r}.")
        return state_dict[key]

    if isinstance(layer, keras.layers.BatchNormalization):
        return [get("weight"), get("bias"), get("running_mean"), get("running_var")]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [get("weight").transpose(2, 3, 0, 1)]
    if isinstance(layer, keras.layers.Conv2D):
        kernel = get("weight")
        if is_stem and kernel.shape[1] == 3 and layer.kernel.shape[2] == 1:
            kernel = kernel.sum(axis=1, keepdims=True)
        arrays = [kernel.transpose(2, 3, 1, 0)]
        return arrays + [get("bias")] if layer.use_bias else arrays
    raise ValueError(f"No PyTorch mapping for Keras layer {layer.name!r} of type {type(layer).__name__}.")


def assign_state_dict(model: keras.Model, state_dict: dict[str, np.ndarray], *, head_prefixes=()) -> list[str]:
    """Sets every weight of `model` from a timm state dict.

    Keras layer `a_b_c` takes PyTorch module `a.b.c` (layer names are timm's module paths).

    Args:
        model: a Zoobot backbone from `gsfc_tf.backbones`.
        state_dict: `{timm key: array}` as `load_state_dict` returns.
        head_prefixes: key prefixes of a classification head that may be present and unused.

    Returns:
        The sorted unused head keys (ignored).

    Raises:
        ValueError: naming the first Keras layer whose tensor is missing or whose shape differs
            (both shapes shown), or the first checkpoint key that belongs to no layer.
    """
    modules = {key.rsplit(".", 1)[0] for key in state_dict}
    module_by_layer_name = {module.replace(".", "_"): module for module in modules}
    weighted = [layer for layer in model.layers if layer.weights]
    used = set()
    for index, layer in enumerate(weighted):
        if layer.name not in module_by_layer_name:
            raise ValueError(f"Checkpoint has no weights for Keras layer {layer.name!r} (PyTorch module expected).")
        prefix = module_by_layer_name[layer.name]
        arrays = _keras_arrays(layer, prefix, state_dict, is_stem=index == 0)
        for variable, array in zip(layer.weights, arrays, strict=True):
            if tuple(variable.shape) != array.shape:
                raise ValueError(
                    f"Shape mismatch at layer {layer.name!r} ({variable.path}): checkpoint {prefix} gives "
                    f"{array.shape} in Keras layout, the model expects {tuple(variable.shape)}."
                )
        layer.set_weights(arrays)
        used.add(prefix)
    unused = sorted(key for key in state_dict if key.rsplit(".", 1)[0] not in used)
    ignored = [key for key in unused if key.startswith(tuple(head_prefixes))]
    unexpected = sorted(set(unused) - set(ignored))
    if unexpected:
        raise ValueError(
            f"Checkpoint key {unexpected[0]!r} belongs to no layer of {model.name!r} (another architecture?)."
        )
    if ignored:
        _log.info("Ignoring %d classification-head tensors: %s", len(ignored), ", ".join(ignored))
    return ignored


def convert(source: str, out: str | Path, *, channels: int | None = None) -> dict:
    """Converts checkpoint `source` into Keras weights at `out` (must end in `.weights.h5`).

    Args:
        source: checkpoint path or Hugging Face id (see `load_state_dict`).
        out: output `.weights.h5` path; parent folders are created.
        channels: input channels of the Keras model (1 or 3); None keeps the checkpoint's.

    Returns:
        `{"backbone", "channels", "ignored"}`: load the file with
        `build_backbone(backbone, weights=out, input_shape=(H, W, channels))`.
    """
    out = Path(out)
    if not out.name.endswith(".weights.h5"):
        raise ValueError(f"--out must end in '.weights.h5', got {out}.")
    state_dict = load_state_dict(source)  # torch, if needed, is imported before TensorFlow here
    backbone = detect_backbone(state_dict)
    stem_key, head_prefixes = _ARCHITECTURES[backbone]
    channels = state_dict[stem_key].shape[1] if channels is None else channels

    from gsfc_tf.backbones import build_backbone

    model = build_backbone(backbone, input_shape=(None, None, channels))
    ignored = assign_state_dict(model, state_dict, head_prefixes=head_prefixes)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(out)
    return {"backbone": backbone, "channels": channels, "ignored": ignored}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="Hugging Face id, or a .bin/.pt/.pth/.safetensors file.")
    parser.add_argument("--out", required=True, help="Output Keras weights file, ending in .weights.h5.")
    parser.add_argument(
        "--channels", type=int, choices=(1, 3), default=None,
        help="Input channels of the Keras model (default: the checkpoint's; 1 from 3 sums the stem kernel).",
    )


def run(args: argparse.Namespace) -> int:
    summary = convert(args.source, args.out, channels=args.channels)
    print(
        f"Wrote {args.out}: build_backbone({summary['backbone']!r}, weights=..., "
        f"input_shape=(H, W, {summary['channels']})); ignored {len(summary['ignored'])} head tensors."
    )
    return 0
