"""Frozen configs and their presets.

`DetectorConfig` holds every architecture and target/inference setting of the Faster R-CNN;
`smoke()` shrinks it to a CPU test run, `paper()` follows Popp et al. 2024 where they state it.
`TrainConfig` wraps a detector with the training settings; `PRESETS` names the training
presets the CLI offers (`gsfc-tf train --config smoke|bench|cpu|paper --set key=value`).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "PRESETS",
    "DetectorConfig",
    "TrainConfig",
    "bench_training",
    "config_from_dict",
    "cpu_training",
    "override",
    "paper",
    "paper_training",
    "smoke",
    "smoke_training",
    "valid_keys",
]


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """Faster R-CNN settings. Pixel sizes are in the model's S x S input frame.

    Image size and anchors (measured on 4,800 synthetic clump boxes, `anchor_boxes` + numpy IoU):
    the share of boxes whose best anchor reaches IoU 0.7 (the RPN positive threshold) is 0.35
    at S=200 with sides 8-64 x (1, 2**0.5), 0.92 at S=400 with sides 16-128 x (1, 2**0.5)
    and 0.99 at S=800 (4x the pixels of 400); torchvision's 32-256 anchors at S=200 reach 0.06.
    So the default upsamples 200 -> 400 px and uses sides 16/32/64/128 on P2..P5.
    """

    backbone: str = "zoobot_efficientnet_b0"
    backbone_weights: str | None = None
    trainable_backbone_layers: int | None = None
    image_size: int = 400
    num_classes: int = 2
    max_clumps: int = 16
    # Pyramid: P2..P5 from C2..C5.
    min_level: int = 2
    max_level: int = 5
    fpn_channels: int = 256
    anchor_sizes: tuple[float, ...] = (16.0, 32.0, 64.0, 128.0)
    anchor_scales: tuple[float, ...] = (1.0, 2**0.5)
    # Clumps are square: one aspect ratio.
    anchor_aspect_ratios: tuple[float, ...] = (1.0,)
    # RPN targets, sampling and proposals.
    rpn_fg_iou: float = 0.7
    rpn_bg_iou: float = 0.3
    rpn_samples_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_nms_iou: float = 0.7
    rpn_pre_nms_top_k_train: int = 2000
    rpn_post_nms_top_k_train: int = 1000
    rpn_pre_nms_top_k_test: int = 1000
    rpn_post_nms_top_k_test: int = 1000
    # ROI head.
    roi_fg_iou: float = 0.5
    roi_samples_per_image: int = 512
    roi_positive_fraction: float = 0.25
    roi_pool_size: int = 7
    roi_sampling_ratio: int = 2
    # A box of side canonical_size pools from P{canonical_level}; 112 px on P4 means a side of
    # about 7 cells of its level, i.e. one cell per output bin, so clumps (<= 96 px at S=400) pool from P2/P3.
    roi_canonical_size: float = 112.0
    roi_canonical_level: int = 4
    head_dim: int = 1024
    roi_box_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    # Postprocess.
    score_threshold: float = 0.05
    nms_iou: float = 0.5
    max_detections: int = 100
    # After the per-class NMS, class-agnostic NMS at this IoU (Popp et al. ran 0.2 before scoring)
    # and suppression of boxes nested in a higher-scoring box (intersection / smaller area at
    # least this); None skips either. Both are inference-only: `models.with_postprocess` changes
    # them on a trained model.
    agnostic_nms_iou: float | None = 0.2
    containment_threshold: float | None = None
    # Then box voting: each detection's box becomes the mean of the decoded boxes (both classes)
    # overlapping it at least this much, weighted by score ** 8; None keeps the boxes. Inference-only
    # too. Measured on 1,000 `synthetic` test galaxies: `cpu` 0.771 / 0.778 -> 0.787 / 0.794, the
    # two `smoke` seeds +0.007 / +0.008 each (RESULTS.md).
    box_voting_iou: float | None = 0.5
    # Then each box's side moves this fraction of the way to its image's mean side, weighted by
    # score ** 8: volunteers size one galaxy's boxes alike (one side per galaxy in every real
    # Clump Scout galaxy with several boxes). Inference-only. Chosen on 1,000 `synthetic` 1.5.0
    # validation galaxies, best for both `cpu` seeds (0.5, 0.75, 1 tried; RESULTS.md); None or 0
    # keeps the sides.
    side_sharing: float | None = 0.75
    # XLA: off. Measured on CPU: the train step does not compile (no XLA kernel for CropAndResize).
    jit_compile: bool = False

    def __post_init__(self):
        num_levels = self.max_level - self.min_level + 1
        if len(self.anchor_sizes) != num_levels:
            raise ValueError(f"Need {num_levels} anchor sizes for P{self.min_level}..P{self.max_level}, got {self.anchor_sizes}.")
        if self.image_size < 2**self.max_level:
            raise ValueError(f"image_size {self.image_size} is smaller than the coarsest stride {2**self.max_level}.")
        for name in ("agnostic_nms_iou", "containment_threshold", "box_voting_iou"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1] or None, got {value}.")
        if self.side_sharing is not None and not 0.0 <= self.side_sharing <= 1.0:
            raise ValueError(f"side_sharing must be in [0, 1] or None, got {self.side_sharing}.")

        smallest_pool = min(self.rpn_post_nms_top_k_train, self.rpn_post_nms_top_k_test) + self.max_clumps
        if smallest_pool < self.roi_samples_per_image:
            raise ValueError(
                f"roi_samples_per_image {self.roi_samples_per_image} exceeds the smallest proposal pool {smallest_pool}."
            )

    @property
    def num_anchors_per_cell(self) -> int:
        return len(self.anchor_scales) * len(self.anchor_aspect_ratios)


def paper(**overrides) -> DetectorConfig:
    """Zoobot EfficientNetB0 backbone with torchvision's Faster R-CNN proposal/ROI counts."""
    return dataclasses.replace(DetectorConfig(), **overrides)


def smoke(**overrides) -> DetectorConfig:
    """Tiny backbone, few proposals: trains on CPU in minutes (tests, demos).

    192 px (0.96x the 200-px crop) with 8-64 px anchors: at 128 px, clumps under 12 crop px (17% of
    them) shrink below the smallest anchor and were found 0-8% of the time; 192 px lifted test
    completeness/purity from 0.63/0.64 (128 px, 1600 steps) to 0.67/0.67 (800 steps, seed 0).
    A 32-channel pyramid: its 3x3 convs and the RPN's on the 48 x 48 P2 map cost more than the
    whole backbone at 64 channels; at 32 a train step takes 0.6x the time (8.4 against 5.1
    steps/s), which buys more steps in the same minutes (RESULTS.md).
    """
    small = DetectorConfig(
        backbone="tiny",
        image_size=192,
        anchor_sizes=(8.0, 16.0, 32.0, 64.0),
        fpn_channels=32,
        rpn_samples_per_image=128,
        rpn_pre_nms_top_k_train=300,
        rpn_post_nms_top_k_train=150,
        rpn_pre_nms_top_k_test=150,
        rpn_post_nms_top_k_test=100,
        roi_samples_per_image=64,
        head_dim=256,
        max_detections=32,
    )
    return dataclasses.replace(small, **overrides)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings around a `DetectorConfig` (see `gsfc_tf.trainer.train`).

    Attributes:
        detector: the model.
        dataset: TFDS name/config; `clump_scout/sdss` needs a manual dir.
        train_split, validation_split: TFDS split names; validation None skips validation.
        train_size, validation_size: use only the first N galaxies (None: all).
        batch_size_per_replica: images per replica per step; the global batch is this times
            the number of replicas.
        epochs: passes over the training set, unless `steps` is set.
        steps: total optimiser steps (overrides `epochs`).
        learning_rate, warmup_steps: Adam, linear warm-up from 1e-3 x `learning_rate`.
        final_learning_rate_fraction: after the warm-up the rate follows a cosine to this fraction
            of `learning_rate` at the last step; 1.0 keeps it constant (the authors' schedule).
        weight_decay: coupled L2 as in torch.optim.Adam (the authors' optimiser).
        clip_norm: global gradient-norm clip (None: off).
        augment: random flips and 90° rotations, boxes included.
        precision: `float32`, `mixed_float16` (GPU) or `mixed_bfloat16` (TPU, recent CPUs).
        strategy: `auto`, `default`, `one_device`, `mirrored`, `multi_worker` or `tpu`.
        validate_every: steps between validations (None: at the end of every epoch); the
            last step is always validated.
        checkpoint_every: steps between checkpoints (one more is always written at the end).
        keep_checkpoints: how many recent checkpoints to keep.
        seed: seeds initialisation, shuffling, augmentation and sampling.
    """

    detector: DetectorConfig = DetectorConfig()
    dataset: str = "clump_scout/synthetic"
    train_split: str = "train"
    validation_split: str | None = "validation"
    train_size: int | None = None
    validation_size: int | None = None
    batch_size_per_replica: int = 4
    epochs: int = 120
    steps: int | None = None
    learning_rate: float = 1e-4
    warmup_steps: int = 1000
    final_learning_rate_fraction: float = 1.0
    weight_decay: float = 5e-5
    clip_norm: float | None = 10.0
    augment: bool = True
    precision: str = "float32"
    strategy: str = "auto"
    validate_every: int | None = None
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    seed: int = 0

    def __post_init__(self):
        if self.precision not in ("float32", "mixed_float16", "mixed_bfloat16"):
            raise ValueError(f"precision must be float32, mixed_float16 or mixed_bfloat16, got {self.precision!r}.")
        for name in ("batch_size_per_replica", "epochs", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if not 0.0 < self.final_learning_rate_fraction <= 1.0:
            raise ValueError(f"final_learning_rate_fraction must be in (0, 1], got {self.final_learning_rate_fraction}.")
        for name in ("steps", "validate_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {getattr(self, name)}.")


def paper_training(**overrides) -> TrainConfig:
    """Popp et al. 2024: Adam, lr 1e-4, weight decay 5e-5, warm-up, flips, batch 4, 120 epochs."""
    return dataclasses.replace(TrainConfig(detector=paper()), **overrides)


def smoke_training(**overrides) -> TrainConfig:
    """Minutes on a CPU: the tiny backbone on a small synthetic set (CI, Colab, `make demo`).

    Measured on 2 CPU cores (RESULTS.md): 1,300 steps on `synthetic_small`'s 2,400 training
    galaxies, about 3 minutes with its 2 validations of 1,000 galaxies (4.5-5.4 with the dataset's
    first build and other jobs, 2026-12-06). On 2.0.0 (the renderer family) its 1,000 test galaxies
    at the threshold chosen on its 1,000 validation galaxies: completeness / purity 0.654 / 0.653
    (seed 0) and 0.645 / 0.643 (seed 1) at IoU 0.5, 0.826 / 0.824 and 0.824 / 0.821 by centre; on
    the one generator of 1.5.0 0.732 / 0.739 and 0.736 / 0.732 at IoU 0.5.
    """
    small = TrainConfig(
        detector=smoke(),
        dataset="clump_scout/synthetic_small",
        batch_size_per_replica=8,
        steps=1300,
        # The tiny backbone trains from scratch: a higher rate than the pre-trained paper setup,
        # decayed to 1% by a cosine (measured within run-to-run spread of the constant rate).
        learning_rate=3e-3,
        warmup_steps=50,
        final_learning_rate_fraction=0.01,
        validate_every=650,
        # A checkpoint costs about 2 s here: every 300 steps loses at most a minute to a crash.
        checkpoint_every=300,
    )
    return dataclasses.replace(small, **overrides)


def bench_training(**overrides) -> TrainConfig:
    """`smoke` trained 1.5x longer: the accuracy row of `make bench` (about 6 minutes on 2 CPU cores)."""
    return smoke_training(**{"steps": 1950, "validate_every": 975, **overrides})


def cpu_training(**overrides) -> TrainConfig:
    """The most a 2-core CPU trains in half an hour: the tiny backbone on `synthetic` at 256 px.

    Measured on `synthetic` 2.0.0, the renderer family (4,000 training galaxies; 2 CPU cores,
    2026-12-06; RESULTS.md): 6,500 steps, 16-31 minutes with its 2 validations of 1,000 galaxies
    (by the day's cores and load); test completeness / purity at the validation threshold 0.725 /
    0.698 (seed 0) and 0.726 / 0.711 (seed 1) at IoU 0.5, 0.873 / 0.841 and 0.870 / 0.852 by
    centre; on `synthetic_heldout` 0.646 / 0.671 and 0.644 / 0.676, by centre 0.820 / 0.852 and
    0.812 / 0.853. Half the family's galaxies size their boxes by the PSF, a side the model reads
    off the pixels poorly (`catalogue.PSF_BOX_SIDES` supplies it for FITS): on 1.5.0 (one generator, sides read off the clumps) it scored 0.821 / 0.811 and
    0.816 / 0.830 at IoU 0.5. There, 12,000 training galaxies scored as 4,000 did, and a 64-channel
    pyramid and 320 px scored lower: the misses are faint clumps, not resolution or steps.
    """
    return smoke_training(
        **{
            "detector": smoke(image_size=256),
            "dataset": "clump_scout/synthetic",
            "steps": 6500,
            "warmup_steps": 100,
            "validate_every": 3250,
            "checkpoint_every": 500,
            **overrides,
        }
    )


PRESETS = {"bench": bench_training, "cpu": cpu_training, "paper": paper_training, "smoke": smoke_training}


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parse_value(raw: str, current: Any, annotation: Any, key: str) -> Any:
    if raw.lower() in ("none", "null"):
        return None
    kind = type(current) if current is not None else next(
        (a for a in typing.get_args(annotation) if a is not type(None)), annotation
    )
    try:
        if kind is bool:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")
        if kind is tuple or typing.get_origin(kind) is tuple:
            items = [v for v in raw.strip("()[] ").split(",") if v.strip()]
            element = type(current[0]) if current else float
            return tuple(element(v) for v in items)
        return kind(raw)
    except (TypeError, ValueError):
        raise ValueError(f"Cannot read {key}={raw!r} as {getattr(kind, '__name__', kind)}.") from None


def override(config: TrainConfig, assignments: Sequence[str]) -> TrainConfig:
    """Applies `key=value` strings (`learning_rate=3e-4`, `detector.image_size=256`) to `config`.

    All assignments are applied together and then validated once, so their order never matters.

    Raises:
        ValueError: malformed assignment, unknown key (the message lists the valid keys), a
            value of the wrong type, or an inconsistent result.
    """
    changes: dict[str, dict[str, Any]] = {"": {}, "detector": {}}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep:
            raise ValueError(f"Expected KEY=VALUE, got {assignment!r}.")
        key = key.strip()
        head, _, field = key.rpartition(".")
        target = config.detector if head == "detector" else config
        types = _field_types(type(target))
        if head not in changes or field not in types or (head, field) == ("", "detector"):
            raise ValueError(f"Unknown config key {key!r}. Valid keys: {', '.join(valid_keys())}.")
        changes[head][field] = _parse_value(raw.strip(), getattr(target, field), types[field], key)
    detector = dataclasses.replace(config.detector, **changes["detector"])
    return dataclasses.replace(config, detector=detector, **changes[""])


def valid_keys() -> list[str]:
    """Every key `override` accepts."""
    train_keys = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "detector"]
    return train_keys + [f"detector.{f.name}" for f in dataclasses.fields(DetectorConfig)]


def _from_dict(cls, values: Mapping[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} fields {sorted(unknown)}.")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
    """Rebuilds a `TrainConfig` from `dataclasses.asdict` output (e.g. a run's config.json)."""
    values = dict(values)
    detector = _from_dict(DetectorConfig, values.pop("detector", {}))
    return dataclasses.replace(_from_dict(TrainConfig, values), detector=detector)
