"""Training configs: presets, `--set key=value` overrides, JSON round trip."""

import dataclasses
import json

import pytest

from gsfc_tf import config


def test_presets_are_named_and_valid():
    assert set(config.PRESETS) == {"smoke", "paper", "bench", "cpu"}
    paper = config.PRESETS["paper"]()
    assert (paper.learning_rate, paper.weight_decay, paper.batch_size_per_replica, paper.epochs) == (1e-4, 5e-5, 4, 120)
    assert paper.detector.backbone == "zoobot_efficientnet_b0" and paper.augment
    smoke = config.PRESETS["smoke"]()
    assert smoke.detector.backbone == "tiny" and smoke.steps is not None
    assert config.PRESETS["bench"]().steps > smoke.steps
    cpu = config.PRESETS["cpu"]()
    assert cpu.dataset == "clump_scout/synthetic" and cpu.detector.backbone == "tiny"
    assert cpu.detector.image_size > smoke.detector.image_size and cpu.steps > config.PRESETS["bench"]().steps


def test_override_parses_types_and_nested_keys():
    updated = config.override(
        config.smoke_training(),
        ["learning_rate=3e-4", "augment=false", "clip_norm=none", "detector.image_size=160",
         "detector.anchor_sizes=8,16,32,64", "train_size=100", "precision=mixed_bfloat16"],
    )
    assert updated.learning_rate == 3e-4 and updated.augment is False and updated.clip_norm is None
    assert updated.detector.image_size == 160 and updated.detector.anchor_sizes == (8.0, 16.0, 32.0, 64.0)
    assert updated.train_size == 100 and updated.precision == "mixed_bfloat16"


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("lerning_rate=1", "Unknown config key 'lerning_rate'. Valid keys: dataset, "),
        ("detector.nope=1", "detector.image_size"),
        ("model.x=1", "Unknown config key 'model.x'"),
        ("learning_rate", "Expected KEY=VALUE"),
        ("steps=ten", "Cannot read steps='ten' as int"),
        ("validate_every=0", "validate_every must be >= 1"),
        ("augment=maybe", "Cannot read augment='maybe' as bool"),
        ("precision=float8", "precision must be"),
        ("final_learning_rate_fraction=0", "final_learning_rate_fraction must be in (0, 1]"),
        ("detector.image_size=8", "smaller than the coarsest stride"),
        ("detector.side_sharing=1.5", "side_sharing must be in "),
    ],
)
def test_override_rejects_bad_input_clearly(assignment, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        config.override(config.smoke_training(), [assignment])


def test_valid_keys_cover_both_levels():
    keys = config.valid_keys()
    assert "learning_rate" in keys and "detector.max_clumps" in keys and "detector" not in keys


def test_json_round_trip():
    original = config.override(config.paper_training(), ["detector.anchor_scales=1,2", "validation_split=none"])
    restored = config.config_from_dict(json.loads(json.dumps(dataclasses.asdict(original))))
    assert restored == original
    with pytest.raises(ValueError, match="Unknown TrainConfig fields"):
        config.config_from_dict({**dataclasses.asdict(original), "bogus": 1})
