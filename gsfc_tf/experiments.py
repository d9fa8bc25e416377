"""The paper's training-set-size experiment: train on the first N galaxies for several N.

For each size a full run is trained (`gsfc_tf.trainer.train`) into `<out>/size_<N>`, then
scored on a held-out split at the threshold chosen on that run's validation split. A size
whose run already finished is not trained again, so an interrupted experiment resumes.

The training budget follows the config: with `steps` set every size gets the same number of
steps (equal compute); without it every size gets the same number of epochs.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from gsfc_tf import data, plots
from gsfc_tf.config import TrainConfig
from gsfc_tf.detector import load_detector, validation_threshold
from gsfc_tf.split_evaluation import evaluate_examples
from gsfc_tf.trainer import train

__all__ = ["train_size_experiment"]

_COLUMNS = (
    "train_size", "threshold", "completeness", "purity", "centre_completeness", "centre_purity", "ap50", "run_dir"
)


def train_size_experiment(
    base: TrainConfig,
    sizes: Sequence[int],
    out_dir: str | Path,
    *,
    split: str = "test",
    data_dir: str | None = None,
    manual_dir: str | None = None,
    progress: bool = True,
) -> list[dict]:
    """Trains and scores one run per training-set size.

    Writes `train_size.csv`, `train_size.json` and `train_size.png` (completeness and purity
    against size) into `out_dir`.

    Returns:
        One row per size, sorted by size: `train_size`, `threshold` (from validation),
        `completeness`, `purity` (on `split` at that threshold, IoU >= 0.5), `centre_completeness`,
        `centre_purity` (the same detections matched by centre, `conventions.CENTRE_MATCH_DISTANCE`),
        `ap50`, `run_dir`.
    """
    sizes = sorted(set(int(n) for n in sizes))
    if not sizes or sizes[0] < 1:
        raise ValueError(f"sizes must be positive integers, got {sizes}.")
    if base.validation_split is None:
        raise ValueError("The experiment picks each run's threshold on validation: set validation_split.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    examples = data.load_tfds_split(base.dataset, split, data_dir=data_dir, manual_dir=manual_dir)
    rows = []
    for size in sizes:
        run_dir = out_dir / f"size_{size}"
        if not (run_dir / "model.keras").exists():
            train(dataclasses.replace(base, train_size=size), run_dir, data_dir=data_dir, manual_dir=manual_dir,
                  resume=(run_dir / "checkpoints").exists(), progress=progress)
        detector = load_detector(run_dir)
        threshold = validation_threshold(detector)
        result = evaluate_examples(detector, examples, fixed_threshold=threshold, progress=progress)
        point = result.metrics["fixed_threshold"]
        rows.append({
            "train_size": size,
            "threshold": threshold,
            "completeness": point["completeness"],
            "purity": point["purity"],
            "centre_completeness": point["centre"]["completeness"],
            "centre_purity": point["centre"]["purity"],
            "ap50": result.metrics["coco"]["AP50"],
            "run_dir": str(run_dir),
        })
        print(f"train_size {size}: completeness {point['completeness']:.3f}, purity {point['purity']:.3f} "
              f"at score >= {threshold:.2f}")
    with open(out_dir / "train_size.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "train_size.json").write_text(json.dumps(rows, indent=2) + "\n")
    figure = plots.plot_training_size_curve(
        [r["train_size"] for r in rows], [r["completeness"] for r in rows], [r["purity"] for r in rows]
    )
    figure.savefig(out_dir / "train_size.png", dpi=120)
    return rows
