"""Accuracy parity with the reference implementation: gsfc-tf vs torchvision `FasterRCNN`, same setup.

Both detectors come from `gsfc_tf.config.smoke_training()`, read at run time, so the comparison
follows the preset. The torchvision side is `FasterRCNN` wired to match it: a torch port of the
tiny backbone (Keras "same" padding and BatchNorm constants, Keras initialisers), an FPN on C2..C5,
our anchors (cell-centred, sides not rounded), the RPN and ROI sampling counts, fractions and IoU
thresholds, pre/post-NMS top-k, ROI align with `aligned=True` and our level mapping, head width,
box weights, post-processing (per-class NMS, then our class-agnostic `suppress_duplicates` stage),
Adam with coupled L2, the trainer's own learning-rate schedule and clip norm, and the very same
`tf.data` batches (shuffle order, dihedral augmentation, bilinear resize to S, [0, 1] floats).
What differs is the implementation: losses, matching, sampling, NMS, ROI align and autodiff.

Both are scored by one path, `split_evaluation.evaluate_examples`: the operating threshold is chosen
on the validation split, then test completeness, purity and their F1 are taken at that
threshold. Every seed trains one model per framework (alternating, so both see the same load).

    python -m benchmarks.bench_accuracy_torchvision [--quick] [--seeds 0 1] [--data-dir DIR] [--results PATH]
"""

from __future__ import annotations

import os

# PyTorch's OpenMP threads spin at barriers by default, stalling for seconds when tf.data's
# threads share the cores; this must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# triton (loaded by timm and torchvision) segfaults when loaded after TensorFlow.
import timm  # noqa: F401, E402, I001
import torch  # noqa: E402
import torchvision  # noqa: E402

import argparse  # noqa: E402
import collections  # noqa: E402
import dataclasses  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.models.detection import FasterRCNN  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator  # noqa: E402
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead  # noqa: E402
from torchvision.models.detection.rpn import RPNHead  # noqa: E402
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign, roi_align  # noqa: E402
from torchvision.ops.poolers import LevelMapper  # noqa: E402

from benchmarks.results import RESULTS_PATH, markdown_table, write_section  # noqa: E402
from gsfc_tf import config as presets  # noqa: E402
from gsfc_tf import data, trainer  # noqa: E402
# The Keras backbone's own widths and the trainer's own schedule: the port follows any change to them.
from gsfc_tf.backbones.tiny import _TINY_CHANNELS  # noqa: E402
from gsfc_tf.config import DetectorConfig, TrainConfig  # noqa: E402
from gsfc_tf.detector import Detector, load_detector, validation_threshold  # noqa: E402
from gsfc_tf.layers import DetectionPostprocess  # noqa: E402
from gsfc_tf.evaluation import point_at_threshold  # noqa: E402
from gsfc_tf.split_evaluation import evaluate_examples  # noqa: E402
from gsfc_tf.trainer import learning_rate_schedule  # noqa: E402

__all__ = ["CellCentredAnchorGenerator", "TinyBackbone", "build_torchvision_detector", "main", "train_torchvision"]

_DATASET = "clump_scout/synthetic_small"
# Keras BatchNormalization defaults; torch's momentum is Keras's 1 - momentum.
_BN_EPSILON, _BN_MOMENTUM = 1e-3, 0.01
# Keras Adam's epsilon (torch's default is 1e-8).
_ADAM_EPSILON = 1e-7


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of Keras `padding="same"`: the odd pixel goes after (bottom/right)."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _SameConv2d(nn.Conv2d):
    """A bias-free conv padded as Keras's `padding="same"`; torch's symmetric padding would shift stride-2 grids."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int):
        super().__init__(in_channels, out_channels, 3, stride=stride, padding=0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = _same_padding(x.shape[-2], 3, self.stride[0])
        left, right = _same_padding(x.shape[-1], 3, self.stride[1])
        return super().forward(nn.functional.pad(x, (left, right, top, bottom)))


class TinyBackbone(nn.Module):
    """`gsfc_tf.backbones.tiny` in torch: five stride-2 stages of conv-BN-ReLU pairs.

    Call args:
        images: float32 [B, 3, H, W] in [0, 1].

    Returns:
        OrderedDict `C{l}` -> float32 [B, C_l, ceil(H / 2**l), ceil(W / 2**l)] for l in `levels`.
    """

    def __init__(self, levels=(1, 2, 3, 4, 5)):
        super().__init__()
        self.levels = tuple(levels)
        stages, in_channels = [], 3
        for channels in _TINY_CHANNELS:
            stages.append(nn.Sequential(
                _SameConv2d(in_channels, channels, stride=2),
                nn.BatchNorm2d(channels, eps=_BN_EPSILON, momentum=_BN_MOMENTUM),
                nn.ReLU(),
                _SameConv2d(channels, channels, stride=1),
                nn.BatchNorm2d(channels, eps=_BN_EPSILON, momentum=_BN_MOMENTUM),
                nn.ReLU(),
            ))
            in_channels = channels
        self.stages = nn.ModuleList(stages)

    def forward(self, images: torch.Tensor) -> collections.OrderedDict:
        features, x = collections.OrderedDict(), images
        for level, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if level in self.levels:
                features[f"C{level}"] = x
        return features


class _TinyWithFpn(nn.Module):
    """Tiny backbone + FPN on C{min_level}..C{max_level}, no extra levels (as `gsfc_tf.layers.FeaturePyramid`)."""

    def __init__(self, config: DetectorConfig):
        super().__init__()
        levels = range(config.min_level, config.max_level + 1)
        self.body = TinyBackbone(levels)
        self.fpn = FeaturePyramidNetwork([_TINY_CHANNELS[level - 1] for level in levels], config.fpn_channels)
        self.out_channels = config.fpn_channels

    def forward(self, images: torch.Tensor) -> collections.OrderedDict:
        return self.fpn(self.body(images))


class CellCentredAnchorGenerator(AnchorGenerator):
    """Anchors as `gsfc_tf.ops.anchor_boxes` makes them.

    torchvision puts anchor centres at `i * stride` and rounds half-sides to whole pixels; ours
    sit at cell centres `(i + 0.5) * stride` with exact sides. Aspect ratios here are torchvision's
    height / width.
    """

    def generate_anchors(self, scales, aspect_ratios, dtype=torch.float32, device=torch.device("cpu")):
        scales = torch.as_tensor(scales, dtype=dtype, device=device)
        height_ratios = torch.sqrt(torch.as_tensor(aspect_ratios, dtype=dtype, device=device))
        widths = (scales[None, :] / height_ratios[:, None]).reshape(-1)
        heights = (scales[None, :] * height_ratios[:, None]).reshape(-1)
        return torch.stack([-widths, -heights, widths, heights], dim=1) / 2

    def grid_anchors(self, grid_sizes, strides):
        return [
            level_anchors + torch.stack([stride_x, stride_y, stride_x, stride_y]).to(level_anchors) / 2
            for level_anchors, (stride_y, stride_x) in zip(super().grid_anchors(grid_sizes, strides), strides)
        ]


class _AlignedMultiScaleRoIAlign(MultiScaleRoIAlign):
    """torchvision's `MultiScaleRoIAlign` with `aligned=True` (ours; torchvision hard-codes False).

    Boxes pool from level `floor(canonical_level + log2(sqrt(area) / canonical_size))`, clamped to
    the pyramid, by torchvision's own `LevelMapper` (the rule `gsfc_tf.ops.assign_fpn_levels` copies).
    """

    def __init__(self, config: DetectorConfig):
        levels = range(config.min_level, config.max_level + 1)
        super().__init__(
            [f"C{level}" for level in levels], config.roi_pool_size, config.roi_sampling_ratio,
            canonical_scale=config.roi_canonical_size, canonical_level=config.roi_canonical_level,
        )
        self.scales = [2.0**-level for level in levels]
        self.map_levels = LevelMapper(
            config.min_level, config.max_level,
            canonical_scale=config.roi_canonical_size, canonical_level=config.roi_canonical_level,
        )

    def forward(self, features, boxes_xyxy, image_shapes):
        rois = torch.cat([
            torch.cat([torch.full_like(image_boxes[:, :1], index), image_boxes], dim=1)
            for index, image_boxes in enumerate(boxes_xyxy)
        ])
        levels = self.map_levels(boxes_xyxy)
        maps = [features[name] for name in self.featmap_names]
        pooled = maps[0].new_zeros((len(rois), maps[0].shape[1], *self.output_size))
        for offset, (level_map, scale) in enumerate(zip(maps, self.scales)):
            in_level = torch.where(levels == offset)[0]
            pooled[in_level] = roi_align(
                level_map, rois[in_level], self.output_size, spatial_scale=scale,
                sampling_ratio=self.sampling_ratio, aligned=True,
            )
        return pooled


def _init_like_keras(model: FasterRCNN) -> None:
    """Keras's initialisers in place of torch's: Glorot-uniform weights and zero biases everywhere
    (`keras.layers.Conv2D`/`Dense` defaults), N(0, 0.01) for the RPN and class outputs and
    N(0, 0.001) for the ROI box deltas, as `gsfc_tf.layers` sets them."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    predictor = model.roi_heads.box_predictor
    for layer, std in ((model.rpn.head.cls_logits, 0.01), (model.rpn.head.bbox_pred, 0.01),
                       (predictor.cls_score, 0.01), (predictor.bbox_pred, 0.001)):
        nn.init.normal_(layer.weight, std=std)


def build_torchvision_detector(config: DetectorConfig) -> FasterRCNN:
    """torchvision's `FasterRCNN` set up exactly as gsfc-tf's detector for `config`.

    Raises:
        ValueError: `config` needs a backbone other than the tiny one trained from scratch.
    """
    if config.backbone != "tiny" or config.backbone_weights or config.trainable_backbone_layers is not None:
        raise ValueError(f"The torch port covers the tiny backbone trained from scratch, not {config.backbone!r}.")
    size = config.image_size
    wy, wx, wh, ww = config.roi_box_weights  # ours are yxyx-ordered, torchvision's xyxy-ordered
    anchors = CellCentredAnchorGenerator(
        sizes=tuple(tuple(side * scale for scale in config.anchor_scales) for side in config.anchor_sizes),
        # Ours (KerasCV's) are width / height.
        aspect_ratios=(tuple(1.0 / ratio for ratio in config.anchor_aspect_ratios),) * len(config.anchor_sizes),
    )
    model = FasterRCNN(
        _TinyWithFpn(config),
        num_classes=None,  # the predictor below has K + 1 outputs (0 = background)
        # Images arrive already resized to S and in [0, 1]: the transform must leave them alone.
        min_size=size,
        max_size=size,
        image_mean=[0.0, 0.0, 0.0],
        image_std=[1.0, 1.0, 1.0],
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(config.fpn_channels, config.num_anchors_per_cell),
        rpn_pre_nms_top_n_train=config.rpn_pre_nms_top_k_train,
        rpn_pre_nms_top_n_test=config.rpn_pre_nms_top_k_test,
        rpn_post_nms_top_n_train=config.rpn_post_nms_top_k_train,
        rpn_post_nms_top_n_test=config.rpn_post_nms_top_k_test,
        rpn_nms_thresh=config.rpn_nms_iou,
        rpn_fg_iou_thresh=config.rpn_fg_iou,
        rpn_bg_iou_thresh=config.rpn_bg_iou,
        rpn_batch_size_per_image=config.rpn_samples_per_image,
        rpn_positive_fraction=config.rpn_positive_fraction,
        box_roi_pool=_AlignedMultiScaleRoIAlign(config),
        box_head=TwoMLPHead(config.fpn_channels * config.roi_pool_size**2, config.head_dim),
        box_predictor=FastRCNNPredictor(config.head_dim, config.num_classes + 1),
        box_score_thresh=config.score_threshold,
        box_nms_thresh=config.nms_iou,
        box_detections_per_img=config.max_detections,
        # One IoU splits foreground from background ROIs, as in gsfc-tf.
        box_fg_iou_thresh=config.roi_fg_iou,
        box_bg_iou_thresh=config.roi_fg_iou,
        box_batch_size_per_image=config.roi_samples_per_image,
        box_positive_fraction=config.roi_positive_fraction,
        bbox_reg_weights=(wx, wy, ww, wh),
    )
    _init_like_keras(model)
    return model


class _TorchvisionAsKeras:
    """Gives a torchvision detector the Keras detector's call contract, for `detector.Detector.from_model`.

    So both frameworks share input resizing, the mapping of boxes back to crop pixels, and every
    stage after torchvision's per-class NMS (`DetectionPostprocess.refine`: the class-agnostic
    stage and shared box sides).
    """

    def __init__(self, model: FasterRCNN, config: DetectorConfig):
        if config.box_voting_iou is not None:
            raise ValueError("torchvision's postprocess keeps no boxes from before NMS to vote with: set box_voting_iou=None.")
        self.model, self.detector_config = model, config
        self.postprocess = DetectionPostprocess.for_detector(config)
        self.device = next(model.parameters()).device

    def _padded_detections(self, images):
        """float32 [B, S, S, 3] -> S-frame yxyx boxes [B, D, 4], scores [B, D], dataset classes [B, D], counts [B]."""
        self.model.eval()
        with torch.no_grad():
            outputs = self.model(list(torch.from_numpy(images.numpy()).permute(0, 3, 1, 2).to(self.device)))
        slots = self.detector_config.max_detections
        boxes = np.zeros((len(outputs), slots, 4), np.float32)
        scores = np.zeros((len(outputs), slots), np.float32)
        classes = np.zeros((len(outputs), slots), np.int32)
        counts = np.zeros(len(outputs), np.int32)
        for index, output in enumerate(outputs):
            count = counts[index] = len(output["scores"])  # torchvision sorts them by descending score
            boxes[index, :count] = output["boxes"].cpu().numpy()[:, [1, 0, 3, 2]]
            scores[index, :count] = output["scores"].cpu().numpy()
            classes[index, :count] = output["labels"].cpu().numpy() - 1  # class 0 is background
        return boxes, scores, classes, counts

    def __call__(self, images, training=False):
        boxes, scores, classes, counts = tf.py_function(
            self._padded_detections, [images], [tf.float32, tf.float32, tf.int32, tf.int32]
        )
        slots = self.detector_config.max_detections
        detections = {
            "boxes": tf.ensure_shape(boxes, [None, slots, 4]),
            "scores": tf.ensure_shape(scores, [None, slots]),
            "classes": tf.ensure_shape(classes, [None, slots]),
            "num_detections": tf.ensure_shape(counts, [None]),
        }
        return self.postprocess.refine(detections)


def _torch_targets(targets, device) -> list[dict[str, torch.Tensor]]:
    """Padded S-frame yxyx targets -> torchvision's per-image xyxy boxes and labels (1 + dataset class)."""
    result = []
    for boxes_yxyx, labels in zip(targets["boxes_yxyx"].numpy(), targets["labels"].numpy()):
        real = labels >= 0
        result.append({
            "boxes": torch.from_numpy(boxes_yxyx[real][:, [1, 0, 3, 2]].copy()).to(device),
            "labels": torch.from_numpy(labels[real].astype(np.int64) + 1).to(device),
        })
    return result


def train_torchvision(config: TrainConfig, *, data_dir: str | None = None) -> FasterRCNN:
    """Trains `build_torchvision_detector(config.detector)` as `gsfc_tf.trainer.train` trains ours.

    The same batches in the same order (each epoch shuffled and augmented with seed
    `config.seed + epoch`), the same steps, learning rate at every step, coupled L2 inside the
    clipped gradient, and Adam's constants. One device; the batch is `batch_size_per_replica`.

    Raises:
        FloatingPointError: a loss became NaN or infinite.
    """
    torch.manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_torchvision_detector(config.detector).to(device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=config.learning_rate, eps=_ADAM_EPSILON)
    examples, num_train = trainer.load_split(config, config.train_split, data_dir=data_dir)
    if config.train_size is not None:
        examples, num_train = examples.take(config.train_size), config.train_size
    examples = examples.cache()
    batch_size = config.batch_size_per_replica
    steps_per_epoch = num_train // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{num_train} training galaxies make no batch of {batch_size}.")
    total_steps = config.steps or config.epochs * steps_per_epoch
    schedule = learning_rate_schedule(config, total_steps)
    model.train()
    step = 0
    for epoch in range(math.ceil(total_steps / steps_per_epoch)):
        batches = data.batch_examples(
            examples, batch_size=batch_size, image_size=config.detector.image_size, augment=config.augment,
            shuffle_buffer=num_train, seed=config.seed + epoch,
        )
        for images, targets in batches.take(min(steps_per_epoch, total_steps - step)):
            for group in optimizer.param_groups:
                group["lr"] = float(schedule(step))  # Keras reads its schedule at the 0-based step too
            losses = model(list(torch.from_numpy(images.numpy()).permute(0, 3, 1, 2).to(device)),
                           _torch_targets(targets, device))
            total = sum(losses.values())
            if not math.isfinite(total.item()):
                raise FloatingPointError(f"torchvision loss became {total.item()} at step {step + 1}.")
            # Coupled L2 in the objective, so it is clipped with the loss gradient as in gsfc-tf.
            objective = total + 0.5 * config.weight_decay * sum(p.square().sum() for p in parameters)
            optimizer.zero_grad()
            objective.backward()
            if config.clip_norm is not None:
                nn.utils.clip_grad_norm_(parameters, config.clip_norm)
            optimizer.step()
            step += 1
    return model


def _test_point(detector: Detector, validation, test) -> dict[str, float | None]:
    """Threshold from `validation`, then test completeness, purity and F1 at it."""
    threshold = evaluate_examples(detector, validation, progress=False).metrics["operating_point"]["threshold"]
    return _with_f1(threshold, evaluate_examples(detector, test, progress=False).metrics)


def _with_f1(threshold: float | None, test_metrics: dict) -> dict[str, float | None]:
    if threshold is None:
        return {"threshold": None, "completeness": None, "purity": None, "f1": None}
    point = point_at_threshold(test_metrics, threshold)
    completeness, purity = point["completeness"], point["purity"]
    f1 = 2 * completeness * purity / (completeness + purity) if completeness + purity > 0 else 0.0
    return {"threshold": threshold, "completeness": completeness, "purity": purity, "f1": f1}


def _run_ours(config: TrainConfig, run_dir: Path, test, data_dir: str | None) -> dict[str, float | None]:
    trainer.train(config, run_dir, data_dir=data_dir, progress=False)
    detector = load_detector(run_dir)
    # The trainer validated the final weights at the last step: that is the validation threshold.
    threshold = validation_threshold(detector)
    return _with_f1(threshold, evaluate_examples(detector, test, progress=False).metrics)


def _run_torchvision(config: TrainConfig, validation, test, data_dir: str | None) -> dict[str, float | None]:
    model = train_torchvision(config, data_dir=data_dir)
    detector = Detector.from_model(_TorchvisionAsKeras(model, config.detector), source="torchvision")
    return _test_point(detector, validation, test)


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _spread(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return "n/a" if not known else f"{max(known) - min(known):.3f}"


def _mean(values: list[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else statistics.fmean(values)


def _ratio(ours: float | None, reference: float | None) -> str:
    return "n/a" if ours is None or not reference else f"{ours / reference:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps on a few galaxies")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="training seeds, each trains both frameworks (default 0 1; --quick: 0)")
    parser.add_argument("--data-dir", default=None, help="TFDS data dir (default: TFDS's)")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="the RESULTS.md to update")
    args = parser.parse_args(argv)
    seeds = args.seeds or ([0] if args.quick else [0, 1])
    if len(seeds) != len(set(seeds)):
        raise ValueError(f"--seeds must differ, got {seeds}.")
    # Quick: tiny budgets that still run every code path (train, validate, score) of both frameworks.
    tiny = dict(steps=2, batch_size_per_replica=4, train_size=16, validation_size=8) if args.quick else {}
    base = presets.smoke_training(dataset=_DATASET, **tiny)
    # Box voting needs the boxes from before NMS, which torchvision's postprocess does not return: neither side votes.
    base = dataclasses.replace(base, detector=dataclasses.replace(base.detector, box_voting_iou=None))
    test_split = "test[:8]" if args.quick else "test"
    torch.set_num_threads(os.cpu_count())

    test = data.load_tfds_split(base.dataset, test_split, data_dir=args.data_dir)
    validation = data.load_tfds_split(base.dataset, base.validation_split, data_dir=args.data_dir)
    if base.validation_size is not None:
        validation = validation.take(base.validation_size)
    num_validation = int(validation.cardinality())
    num_train = base.train_size or int(
        data.load_tfds_split(base.dataset, base.train_split, data_dir=args.data_dir).cardinality()
    )
    steps = base.steps or base.epochs * (num_train // base.batch_size_per_replica)
    load_before = os.getloadavg()[0]
    rows, results = [], {"gsfc-tf": [], "torchvision": []}
    with tempfile.TemporaryDirectory(prefix="gsfc-bench-parity-") as tmp:
        for seed in seeds:
            # One validation, after the last step: the same final weights torchvision's threshold comes from.
            config = dataclasses.replace(base, seed=seed, validate_every=steps)
            for framework in results:
                start = time.perf_counter()
                if framework == "gsfc-tf":
                    point = _run_ours(config, Path(tmp) / f"seed_{seed}", test, args.data_dir)
                else:
                    point = _run_torchvision(config, validation, test, args.data_dir)
                minutes = (time.perf_counter() - start) / 60
                results[framework].append(point)
                rows.append([framework, seed, f"{minutes:.1f}", _number(point["threshold"], 2),
                             *(_number(point[key]) for key in ("completeness", "purity", "f1"))])
                print(rows[-1], flush=True)

    summary = []
    for framework, points in results.items():
        means = {key: _mean([p[key] for p in points]) for key in ("completeness", "purity", "f1")}
        summary.append([framework, *(_number(means[key]) for key in means), _spread([p["f1"] for p in points])])
    ratios = [_ratio(ours["f1"], reference["f1"]) for ours, reference in zip(results["gsfc-tf"], results["torchvision"])]
    mean_f1 = {framework: _mean([p["f1"] for p in points]) for framework, points in results.items()}
    f1_ratio = _ratio(mean_f1["gsfc-tf"], mean_f1["torchvision"])
    summary.append(["ratio gsfc-tf / torchvision", *(
        _ratio(_mean([p[key] for p in results["gsfc-tf"]]), _mean([p[key] for p in results["torchvision"]]))
        for key in ("completeness", "purity")
    ), f1_ratio, "per seed " + ", ".join(ratios)])

    detector = base.detector
    body = (
        f"`{_DATASET}` (train {num_train}, validation {num_validation}, test "
        f"`{test_split}`). Both frameworks train the `smoke` preset as it stands: {detector.backbone} backbone from "
        f"scratch, FPN {detector.fpn_channels} channels on P{detector.min_level}..P{detector.max_level}, "
        f"{detector.image_size} px, anchors {detector.anchor_sizes} x {tuple(round(s, 3) for s in detector.anchor_scales)}, "
        f"{steps} steps of batch {base.batch_size_per_replica}, Adam lr {base.learning_rate:g} "
        f"(warm-up {base.warmup_steps}, final fraction {base.final_learning_rate_fraction:g}), "
        f"coupled L2 {base.weight_decay:g}, clip {base.clip_norm}, dihedral augmentation {base.augment}, the same "
        f"batches; class-agnostic NMS {detector.agnostic_nms_iou}, containment "
        f"{detector.containment_threshold} after per-class NMS {detector.nms_iou}, box sides shared "
        f"{detector.side_sharing}, no box voting (torchvision keeps no boxes from before NMS to vote "
        "with). torchvision's "
        "`FasterRCNN` gets our tiny backbone (torch port), anchors, sampling, ROI align and initialisers, so what "
        "differs is the implementation. Threshold chosen on validation, then completeness and purity "
        "(class-agnostic, IoU >= 0.5) on test at it, scored by the same `gsfc_tf.evaluation` code; F1 = "
        "2CP / (C + P). Minutes cover training and scoring both splits. 1-minute load average "
        f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after (shared machine: load changes the minutes, "
        "not the scores).\n\n"
        + markdown_table(["framework", "seed", "minutes", "threshold (from validation)", "completeness", "purity", "F1"],
                         rows)
        + f"\n\nOver seeds {', '.join(str(s) for s in seeds)}; the goal is an F1 ratio >= 1.0.\n\n"
        + markdown_table(["", "completeness (mean)", "purity (mean)", "F1 (mean)", "F1 spread (max - min)"], summary)
    )
    write_section("accuracy_torchvision", "Accuracy parity with torchvision FasterRCNN" + (" (quick)" if args.quick else ""),
                  body, path=args.results)
    print(f"F1 ratio gsfc-tf / torchvision {f1_ratio} (per seed {', '.join(ratios)})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
