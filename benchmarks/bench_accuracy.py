"""Accuracy after a fixed training budget: completeness and purity on held-out synthetic galaxies.

Trains the `smoke` and `bench` presets and a small training-set-size curve (smoke detector,
equal steps per size) on `clump_scout/synthetic_small`, each through
`experiments.train_size_experiment`: the score threshold is chosen on the run's validation
split, then completeness and purity (IoU >= 0.5, class-agnostic) and AP50 are measured on the
test split at that threshold. Each preset's model is also run on the Hubble deep field's
background crops (`gsfc_tf.realimages`), where every detection at that threshold is false.
Runs go to a temporary directory, so every figure is from this run.

    python -m benchmarks.bench_accuracy [--quick] [--data-dir DIR] [--results PATH]
"""

from __future__ import annotations

# machine_description() imports torch after TensorFlow; triton segfaults unless timm and
# torchvision are loaded first.
import timm  # noqa: F401, I001
import torchvision  # noqa: F401

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.results import add_training_arguments, markdown_table, training_budget, write_section
from gsfc_tf import config as presets
from gsfc_tf import data, realimages
from gsfc_tf.conventions import CENTRE_MATCH_DISTANCE
from gsfc_tf.detector import load_detector
from gsfc_tf.experiments import train_size_experiment

__all__ = ["main"]

_DATASET = "clump_scout/synthetic_small"
_CURVE_FRACTIONS = (1 / 8, 1 / 4, 1 / 2, 1)  # of the training split
_CURVE_STEPS = 300


def _score(row: dict) -> list[str]:
    """Threshold, completeness, purity (IoU 0.5, then by centre) and AP50; `n/a` where the run could not produce one."""
    keys = ("threshold", "completeness", "purity", "centre_completeness", "centre_purity", "ap50")
    return ["n/a" if row[key] is None else f"{row[key]:.{2 if key == 'threshold' else 3}f}" for key in keys]


def _false_detections(run_dir: str, threshold: float, background_images: np.ndarray) -> str:
    """Detections per background crop at `threshold`: every one is false."""
    found = load_detector(run_dir).detect_boxes(background_images)
    return f"{realimages.detections_per_crop(found, threshold):.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_arguments(parser)
    args = parser.parse_args(argv)
    split, tiny = training_budget(args.quick)
    split_sizes = {
        name: int(data.load_tfds_split(_DATASET, name, data_dir=args.data_dir).cardinality())
        for name in ("train", "validation", "test")
    }
    train_size = 16 if args.quick else split_sizes["train"]
    curve_sizes = (8, 16) if args.quick else tuple(round(f * train_size) for f in _CURVE_FRACTIONS)
    curve_steps = 2 if args.quick else _CURVE_STEPS
    configs = {
        name: presets.PRESETS[name](dataset=_DATASET, **tiny) for name in ("smoke", "bench")
    }

    # The Hubble deep field's background crops, segmented once for every preset.
    background_crops = realimages.background_crops(realimages.hubble_deep_field(), 8)
    hubble_background = np.stack([crop.image for crop in background_crops])
    load_before = os.getloadavg()[0]
    preset_rows = []
    with tempfile.TemporaryDirectory(prefix="gsfc-bench-accuracy-") as tmp:
        for name, config in configs.items():
            start = time.perf_counter()
            (row,) = train_size_experiment(config, [train_size], Path(tmp) / name, split=split, data_dir=args.data_dir,
                                           progress=False)
            minutes = (time.perf_counter() - start) / 60
            hubble = "n/a" if row["threshold"] is None else _false_detections(
                row["run_dir"], row["threshold"], hubble_background)
            preset_rows.append([f"`{name}`", config.steps, train_size, f"{minutes:.1f}", *_score(row), hubble])
            print(preset_rows[-1], flush=True)
        curve_config = configs["smoke"]
        # One validation per run, at its last step: that sets the threshold the curve scores at.
        curve_config = dataclasses.replace(curve_config, steps=curve_steps, validate_every=curve_steps,
                                           validation_size=curve_config.validation_size or 100)
        start = time.perf_counter()
        curve = train_size_experiment(curve_config, curve_sizes, Path(tmp) / "curve", split=split,
                                      data_dir=args.data_dir, progress=False)
        curve_minutes = (time.perf_counter() - start) / 60
    curve_rows = [[row["train_size"], *_score(row)] for row in curve]

    score_header = [
        "threshold (from validation)", "completeness", "purity", f"completeness by centre (≤ {CENTRE_MATCH_DISTANCE:g} px)",
        "purity by centre", "AP50",
    ]
    detector = configs["smoke"].detector
    body = (
        f"`{_DATASET}` (synthetic galaxies; train {split_sizes['train']}, validation {split_sizes['validation']}, "
        f"test {split_sizes['test']}), scored on `{split}` at the score "
        "threshold chosen on validation (the point maximising min(completeness, purity)); completeness and purity "
        f"class-agnostic at IoU >= 0.5 and, beside them, by box centres at most {CENTRE_MATCH_DISTANCE:g} px apart, "
        f"AP50 COCO-style. Smoke detector ({detector.backbone} backbone from scratch, "
        f"{detector.image_size} px), batch {configs['smoke'].batch_size_per_replica}, seed 0, CPU. 1-minute load "
        f"average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after (shared machine: load changes the "
        "minutes, not the scores).\n\n"
        + markdown_table(["preset", "steps", "train galaxies", "minutes", *score_header,
                          "false detections per Hubble background crop"], preset_rows)
        + f"\n\nTraining-set-size curve: smoke detector, {curve_steps} steps for every size (equal compute; "
        f"{curve_minutes:.1f} minutes in all), threshold from the first {curve_config.validation_size} "
        "validation galaxies.\n\n"
        + markdown_table(["train galaxies", *score_header], curve_rows)
    )
    write_section("accuracy", "Accuracy after a fixed training budget" + (" (quick)" if args.quick else ""), body,
                  path=args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
