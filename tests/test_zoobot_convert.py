"""`gsfc-tf zoobot-weights`: converted timm checkpoints give timm's features_only maps exactly."""

import subprocess
import sys

import numpy as np
import pytest
import safetensors.torch
import timm
import torch

from gsfc_tf import cli
from gsfc_tf.backbones import build_backbone
from gsfc_tf.backbones.convert import convert, load_state_dict

_LEVELS = ("C1", "C2", "C3", "C4", "C5")
_RELATIVE_TOLERANCE = 1e-4  # of each map's largest |value|


def _random_timm_model(arch: str, *, seed: int, in_chans: int = 3, **kwargs) -> torch.nn.Module:
    """A timm model with seeded weights and BatchNorm statistics far from their (0, 1) defaults."""
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, in_chans=in_chans, **kwargs)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.2, generator=generator)
                module.running_mean.normal_(0.0, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
    return model.eval()


def _timm_features(arch: str, state_dict: dict, images_nhwc: np.ndarray) -> list[np.ndarray]:
    """timm `features_only` maps (NHWC) of `arch` loaded with the backbone part of `state_dict`."""
    model = timm.create_model(arch, pretrained=False, features_only=True, in_chans=images_nhwc.shape[-1]).eval()
    model.load_state_dict({key: value for key, value in state_dict.items() if key in model.state_dict()})
    with torch.no_grad():
        maps = model(torch.from_numpy(images_nhwc).permute(0, 3, 1, 2))
    return [m.permute(0, 2, 3, 1).numpy() for m in maps]


def _assert_close(keras_maps: dict, timm_maps: list[np.ndarray]) -> None:
    for level, expected in zip(_LEVELS, timm_maps, strict=True):
        actual = np.asarray(keras_maps[level])
        assert actual.shape == expected.shape, level
        scale = np.abs(expected).max()
        assert scale > 1e-3, f"{level} is degenerate"
        np.testing.assert_array_less(np.abs(actual - expected).max(), _RELATIVE_TOLERANCE * scale, err_msg=level)


def _images(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


@pytest.fixture(scope="module")
def b0_checkpoint(tmp_path_factory):
    """A Zoobot-like timm efficientnet_b0 encoder (num_classes=0: conv_head/bn2 kept) as .bin."""
    model = _random_timm_model("efficientnet_b0", seed=1, num_classes=0)
    path = tmp_path_factory.mktemp("b0") / "pytorch_model.bin"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def test_efficientnet_b0_cli_in_process_matches_timm(b0_checkpoint, tmp_path, capsys):
    path, state_dict = b0_checkpoint
    out = tmp_path / "zoobot_b0.weights.h5"
    assert cli.main(["zoobot-weights", "--source", str(path), "--out", str(out)]) == 0
    assert "ignored" in capsys.readouterr().out
    images = _images((2, 64, 64, 3))
    model = build_backbone("zoobot_efficientnet_b0", weights=str(out), input_shape=(64, 64, 3))
    _assert_close(model(images), _timm_features("efficientnet_b0", state_dict, images))


def test_greyscale_encoder_from_safetensors_matches_timm(tmp_path):
    model = _random_timm_model("efficientnet_b0", seed=2, in_chans=1, features_only=True)
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(model.state_dict(), str(path))
    out = tmp_path / "grey.weights.h5"
    assert cli.main(["zoobot-weights", "--source", str(path), "--out", str(out)]) == 0
    images = _images((1, 67, 67, 1))  # odd size: ceil-rounded strides
    keras_model = build_backbone("zoobot_efficientnet_b0", weights=str(out), input_shape=(None, None, 1))
    _assert_close(keras_model(images), _timm_features("efficientnet_b0", model.state_dict(), images))


def test_colour_checkpoint_to_one_channel_sums_stem(b0_checkpoint, tmp_path):
    path, state_dict = b0_checkpoint
    out = tmp_path / "grey_from_rgb.weights.h5"
    assert cli.main(["zoobot-weights", "--source", str(path), "--out", str(out), "--channels", "1"]) == 0
    grey = _images((1, 64, 64, 1), seed=3)
    keras_model = build_backbone("zoobot_efficientnet_b0", weights=str(out), input_shape=(64, 64, 1))
    _assert_close(keras_model(grey), _timm_features("efficientnet_b0", state_dict, np.repeat(grey, 3, axis=-1)))


def test_zoobot_resnet50_matches_timm(tmp_path):
    model = _random_timm_model("resnet50", seed=4)  # full model: the fc head is ignored
    path = tmp_path / "pytorch_model.bin"
    torch.save(model.state_dict(), path)
    out = tmp_path / "zoobot_resnet50.weights.h5"
    assert cli.main(["zoobot-weights", "--source", str(path), "--out", str(out)]) == 0
    images = _images((1, 64, 64, 3), seed=5)
    keras_model = build_backbone("zoobot_resnet50", weights=str(out), input_shape=(64, 64, 3))
    _assert_close(keras_model(images), _timm_features("resnet50", model.state_dict(), images))


def test_cli_subprocess(tmp_path):
    model = _random_timm_model("efficientnet_b0", seed=6, features_only=True)
    source = tmp_path / "pytorch_model.bin"  # a fresh process imports torch, then TensorFlow
    torch.save(model.state_dict(), source)
    out = tmp_path / "sub.weights.h5"
    result = subprocess.run(
        [sys.executable, "-m", "gsfc_tf.cli", "zoobot-weights", "--source", str(source), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "zoobot_efficientnet_b0" in result.stdout
    images = _images((1, 32, 32, 3), seed=7)
    keras_model = build_backbone("zoobot_efficientnet_b0", weights=str(out), input_shape=(32, 32, 3))
    _assert_close(keras_model(images), _timm_features("efficientnet_b0", model.state_dict(), images))


def _convert_dict(state_dict, tmp_path):
    path = tmp_path / "edited.bin"
    torch.save(state_dict, path)
    return convert(str(path), tmp_path / "x.weights.h5")


def test_missing_key_names_the_layer(b0_checkpoint, tmp_path):
    state_dict = dict(b0_checkpoint[1])
    del state_dict["blocks.3.1.bn2.running_var"]
    with pytest.raises(ValueError, match=r"blocks\.3\.1\.bn2\.running_var.*blocks_3_1_bn2"):
        _convert_dict(state_dict, tmp_path)


def test_shape_mismatch_names_first_layer_and_both_shapes(b0_checkpoint, tmp_path):
    state_dict = dict(b0_checkpoint[1])
    state_dict["blocks.2.0.conv_pw.weight"] = torch.zeros(100, 24, 1, 1)
    state_dict["blocks.5.0.conv_pw.weight"] = torch.zeros(1, 1, 1, 1)
    with pytest.raises(ValueError, match=r"'blocks_2_0_conv_pw'.*\(1, 1, 24, 100\).*\(1, 1, 24, 144\)"):
        _convert_dict(state_dict, tmp_path)


def test_other_architecture_is_rejected(tmp_path):
    b1 = _random_timm_model("efficientnet_b1", seed=8, features_only=True)  # same widths, more blocks
    with pytest.raises(ValueError, match=r"blocks\.0\.1\..*belongs to no layer"):
        _convert_dict(b1.state_dict(), tmp_path)


def test_unrecognised_keys_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="Not a timm efficientnet_b0 or resnet50"):
        _convert_dict({"linear.weight": torch.zeros(2, 2)}, tmp_path)


@pytest.mark.parametrize("name", ["garbage.bin", "garbage.safetensors", "garbage.txt"])
def test_wrong_file_is_rejected(tmp_path, name):
    path = tmp_path / name
    path.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"checkpoint"):
        load_state_dict(str(path))


def test_bad_source_and_out_are_rejected(b0_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="neither an existing file nor a Hugging Face id"):
        load_state_dict(str(tmp_path / "missing" / "model.bin"))

def test_cli_reports_a_bad_out_path_in_one_line(b0_checkpoint, tmp_path, capsys):
    code = cli.main(["zoobot-weights", "--source", str(b0_checkpoint[0]), "--out", str(tmp_path / "w.h5")])
    assert code == 2
    error = capsys.readouterr().err
    assert "gsfc-tf zoobot-weights: error:" in error and ".weights.h5" in error and "Traceback" not in error


def test_lightning_checkpoint_wrapper_and_encoder_prefix(tmp_path):
    path = tmp_path / "zoobot.ckpt"
    checkpoint = {"encoder.conv_stem.weight": torch.ones(32, 3, 3, 3), "head.linear.weight": torch.ones(2, 2)}
    torch.save({"state_dict": checkpoint, "epoch": 3}, path)
    state_dict = load_state_dict(str(path))
    assert list(state_dict) == ["conv_stem.weight"]
    np.testing.assert_array_equal(state_dict["conv_stem.weight"], np.ones((32, 3, 3, 3), np.float32))
