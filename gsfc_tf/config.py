"""Frozen configs and their presets.

`DetectorConfig` holds every architecture and target/inference setting of the Faster R-CNN;
`smoke()` shrinks it to a CPU test run, `paper()` follows Popp et al. 2024 where they state it.
"""

from __future__ import annotations

import dataclasses

__all__ = ["DetectorConfig", "paper", "smoke"]


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
    # XLA: off. Measured on CPU: the train step does not compile (no XLA kernel for CropAndResize).
    jit_compile: bool = False

    def __post_init__(self):
        num_levels = self.max_level - self.min_level + 1
        if len(self.anchor_sizes) != num_levels:
            raise ValueError(f"Need {num_levels} anchor sizes for P{self.min_level}..P{self.max_level}, got {self.anchor_sizes}.")
        if self.image_size < 2**self.max_level:
            raise ValueError(f"image_size {self.image_size} is smaller than the coarsest stride {2**self.max_level}.")

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
    """Tiny backbone, few proposals: trains on CPU in minutes (tests, demos)."""
    small = DetectorConfig(
        backbone="tiny",
        image_size=128,
        anchor_sizes=(8.0, 16.0, 32.0, 64.0),
        fpn_channels=64,
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
