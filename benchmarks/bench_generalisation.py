"""Quality that survives a different renderer: own test and the held-out variant, over seeds.

Trains each preset at each seed on its own dataset (`experiments.train_size_experiment`: the
threshold is chosen on the run's validation split), then scores the same model at that threshold
on its own test split and on `clump_scout/synthetic_heldout`, whose renderer choices lie outside
the training family's ranges (`synthetic.HELDOUT_FAMILY`), at IoU >= 0.5 and by centre. Runs are
kept in `--out`, so a finished run is scored again without training.

Box sides from physics (#28 item 4): every synthetic galaxy records its PSF FWHM (`render/psf_fwhm`),
as a FITS cutout's header does. The same detections are scored again with each box's side set to
`conventions.BOX_SIDE_PER_PSF_FWHM` x FWHM ("psf", what `catalogue.PSF_BOX_SIDES` does to FITS
cutouts), and to the geometric mean of that and the model's side ("halfway"), against the model's
own sides, split by the galaxy's box-side rule.

    python -m benchmarks.bench_generalisation [--presets smoke,cpu] [--seeds 0,1] [--out DIR] [--quick]
"""

from __future__ import annotations

# machine_description() imports torch after TensorFlow; triton segfaults unless timm and
# torchvision are loaded first.
import timm  # noqa: F401, I001
import torchvision  # noqa: F401

import argparse
import statistics
import sys
import time
from pathlib import Path

from benchmarks.results import add_training_arguments, markdown_table, training_budget, write_section
from gsfc_tf import config as presets
import numpy as np

from gsfc_tf import conventions, data, evaluation
from gsfc_tf.conventions import BOX_SIDE_PER_PSF_FWHM, CENTRE_MATCH_DISTANCE
from gsfc_tf.detector import load_detector
from gsfc_tf.experiments import train_size_experiment
from gsfc_tf.split_evaluation import evaluate_examples

__all__ = ["HELDOUT_DATASET", "main"]

HELDOUT_DATASET = "clump_scout/synthetic_heldout"
_FIGURES = ("completeness", "purity", "centre_completeness", "centre_purity")


_SIDE_VARIANTS = ("model", "psf", "halfway")


def _with_sides(boxes: evaluation.ImageBoxes, psf_side: float, variant: str) -> evaluation.ImageBoxes:
    """The boxes with the same centres and the `variant`'s side (see the module docstring)."""
    if variant == "model" or not len(boxes):
        return boxes
    model_sides = np.sqrt(np.prod(boxes.boxes_yxyx[:, 2:] - boxes.boxes_yxyx[:, :2], axis=1))
    sides = psf_side if variant == "psf" else np.sqrt(model_sides * psf_side)
    return evaluation.ImageBoxes(conventions.boxes_with_side(boxes.boxes_yxyx, sides), boxes.labels, boxes.scores)


def _score(run_dir: str, dataset: str, threshold: float, split: str, data_dir: str | None) -> tuple[dict, list]:
    """The run's completeness and purity on `dataset` at `threshold`, and the box-side rows (module docstring)."""
    examples = data.load_tfds_split(dataset, split, data_dir=data_dir)
    result = evaluate_examples(load_detector(run_dir), examples, fixed_threshold=threshold, progress=False)
    point = result.metrics["fixed_threshold"]
    figures = {
        "completeness": point["completeness"],
        "purity": point["purity"],
        "centre_completeness": point["centre"]["completeness"],
        "centre_purity": point["centre"]["purity"],
    }
    drawn = examples.map(lambda e: (e["image/id"], e["render"]["psf_fwhm"], e["render"]["box_side_rule"]))
    render = {image_id.decode(): (float(psf_fwhm), rule.decode()) for image_id, psf_fwhm, rule in drawn.as_numpy_iterator()}
    fwhm, rule = zip(*(render[image_id] for image_id in result.ids))
    rows = []
    for subset in sorted(set(rule)) + ["all"]:
        keep = [k for k, r in enumerate(rule) if subset in ("all", r)]
        cells = []
        for variant in _SIDE_VARIANTS:
            predictions = [_with_sides(result.predictions[k], BOX_SIDE_PER_PSF_FWHM * fwhm[k], variant) for k in keep]
            metrics = evaluation.evaluate_detections([result.truths[k] for k in keep], predictions)
            at = evaluation.point_at_threshold(metrics, threshold)
            cells.append(f"{at['completeness']:.3f} / {at['purity']:.3f}")
        rows.append([subset, len(keep), *cells])
    return figures, rows


def _pair(row: dict, kind: str) -> str:
    prefix = "" if kind == "iou" else "centre_"
    return f"{row[prefix + 'completeness']:.3f} / {row[prefix + 'purity']:.3f}"


def _mean_and_spread(rows: list[dict], key: str) -> str:
    values = [row[key] for row in rows]
    return f"{statistics.mean(values):.3f} ± {(max(values) - min(values)) / 2:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="smoke,cpu", help="comma-separated preset names")
    parser.add_argument("--seeds", default="0,1", help="comma-separated training seeds")
    parser.add_argument("--out", type=Path, default=Path("out/bench_generalisation"), help="where runs are kept")
    add_training_arguments(parser)
    args = parser.parse_args(argv)
    split, tiny = training_budget(args.quick)
    table, by_preset, side_rows = [], {}, []
    for name in args.presets.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            config = presets.PRESETS[name](seed=seed, **tiny)
            train_size = 16 if args.quick else None
            sizes = [train_size or int(data.load_tfds_split(config.dataset, "train", data_dir=args.data_dir).cardinality())]
            start = time.perf_counter()
            (own,) = train_size_experiment(config, sizes, args.out / f"{name}_seed{seed}", split=split,
                                           data_dir=args.data_dir, progress=False)
            _, own_sides = _score(own["run_dir"], config.dataset, own["threshold"], split, args.data_dir)
            held_out, held_out_sides = _score(own["run_dir"], HELDOUT_DATASET, own["threshold"], split, args.data_dir)
            side_rows += [[f"`{name}`", seed, "own", *row] for row in own_sides]
            side_rows += [[f"`{name}`", seed, "held-out", *row] for row in held_out_sides]
            minutes = (time.perf_counter() - start) / 60
            by_preset.setdefault(name, []).append((own, held_out))
            table.append([f"`{name}`", seed, f"{minutes:.1f}", f"{own['threshold']:.2f}",
                          _pair(own, "iou"), _pair(own, "centre"), _pair(held_out, "iou"), _pair(held_out, "centre")])
            print(table[-1], flush=True)
    summary = []
    for name, runs in by_preset.items():
        owns, held_outs = [own for own, _ in runs], [held for _, held in runs]
        summary.append([f"`{name}` ({len(runs)} seeds)",
                        *(_mean_and_spread(owns, key) for key in _FIGURES),
                        *(_mean_and_spread(held_outs, key) for key in _FIGURES)])
    centre = f"by centre (≤ {CENTRE_MATCH_DISTANCE:g} px)"
    body = (
        f"Each preset trained on its own dataset at each seed; threshold chosen on its validation split; "
        f"scored at that threshold on its own `{split}` split and on `{HELDOUT_DATASET}` `{split}` (renderer "
        "choices outside the training family's ranges). Completeness / purity, class-agnostic, at IoU >= 0.5 "
        f"and {centre}. Minutes include training, both scorings and any dataset build.\n\n"
        + markdown_table(["preset", "seed", "minutes", "threshold", "own IoU 0.5", f"own {centre}",
                          "held-out IoU 0.5", f"held-out {centre}"], table)
        + "\n\nMean ± half the spread over the seeds:\n\n"
        + markdown_table(["preset", "own C (IoU 0.5)", "own P", "own C (centre)", "own P (centre)",
                          "held-out C (IoU 0.5)", "held-out P", "held-out C (centre)", "held-out P (centre)"], summary)
        + f"\n\nBox sides from the PSF: the same detections, IoU >= 0.5, each box's side kept (model), set to "
        f"{BOX_SIDE_PER_PSF_FWHM:g} x the galaxy's PSF FWHM (psf), or the geometric mean of the two (halfway); "
        "by the galaxy's box-side rule (`render/box_side_rule`).\n\n"
        + markdown_table(["preset", "seed", "test", "box-side rule", "galaxies", *(f"{v} C / P" for v in _SIDE_VARIANTS)],
                         side_rows)
    )
    write_section("generalisation", "Own test and the held-out renderer" + (" (quick)" if args.quick else ""), body,
                  path=args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
