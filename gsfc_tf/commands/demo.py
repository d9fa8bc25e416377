"""`make demo`: the whole chain on CPU, on synthetic Clump-Scout-like galaxies.

1. build `clump_scout/synthetic_small` (or `--dataset`) and draw galaxies with their true clumps;
2. train the `smoke` preset (a few minutes on a CPU);
3. evaluate on the held-out test split at the threshold chosen on validation, then again with
   dihedral test-time augmentation (its threshold chosen on validation under TTA; `--no-tta` skips it);
4. export a TF Serving SavedModel;
5. catalogue `DEMO_CUTOUTS` synthetic u, g, r, i, z FITS cutouts (`gsfc-tf synthetic-fits`) with the
   export, as `gsfc-tf predict` does: clumps with host and photometry columns, and their truth.

It prints a few lines per step beside the progress bars and ends with the headline: completeness
and purity on the test split.

Everything goes under `--out`: `tensorflow_datasets/` (unless `--data-dir`), `galaxies.png`, `run/`, `evaluation/`
(metrics.json and plots, `evaluation_tta/` under TTA), `export/gsfc_tf/1/` and `catalogue/` (the FITS
cutouts with `truth.ecsv`, `clumps.csv` and `clumps.images.csv`).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEMO_CUTOUTS", "configure_parser", "run"]

DEMO_CUTOUTS = 10


def configure_parser(parser) -> None:
    parser.add_argument("--out", default="out/demo", help="where the dataset, run, plots and export go")
    parser.add_argument("--data-dir", help="TFDS data dir (default: <out>/tensorflow_datasets)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the smoke preset, e.g. --set steps=200")
    parser.add_argument("--no-tta", dest="tta", action="store_false",
                        help="skip the second evaluation with dihedral test-time augmentation (8x the compute)")


def run(args) -> int:
    import keras

    from gsfc_tf import config, data, evaluation, export, plots, trainer
    from gsfc_tf.detector import Detector, validation_threshold
    from gsfc_tf.split_evaluation import tta_validation_threshold

    out = Path(args.out)
    smoke = config.override(config.smoke_training(), args.overrides)
    data_dir = args.data_dir
    if data_dir is None:
        data_dir = str(out / "tensorflow_datasets")
        Path(data_dir).mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    print(f"[1/5] Data: {smoke.dataset} in {data_dir} (built on first use)")
    images, truths = [], []
    for example in data.load_tfds_split(smoke.dataset, "train", data_dir=data_dir).take(16):
        image, boxes_yxyx, labels = data.from_tfds_example(example)
        images.append(image.numpy())
        truths.append(evaluation.ImageBoxes(boxes_yxyx.numpy(), labels.numpy()))
    plots.plot_detections_grid(images, truths).savefig(out / "galaxies.png", dpi=120)
    print(f"      wrote {out / 'galaxies.png'}: {len(images)} training galaxies with their true clumps")

    run_dir = out / "run"
    print(f"[2/5] Training the smoke preset ({smoke.steps} steps) into {run_dir}")
    if (run_dir / "model.keras").exists():
        print(f"      already trained: {run_dir / 'model.keras'} (delete {run_dir} to train again)")
    else:
        resume = (run_dir / "checkpoints").exists()
        result = trainer.train(smoke, run_dir, data_dir=data_dir, resume=resume)
        print(f"      {'resumed and trained' if resume else 'trained'} {result.steps} steps: {result.model_path}")

    print("[3/5] Evaluating on the test split at the validation threshold")
    model = keras.saving.load_model(run_dir / "model.keras")
    detector = Detector.from_model(model, run_dir=run_dir)
    threshold = validation_threshold(detector)
    plain = _score_test_split(detector, threshold, smoke.dataset, data_dir, out / "evaluation")
    with_tta = None
    if args.tta:
        print("      With dihedral test-time augmentation (8 views per image; its threshold chosen on validation):")
        detector = Detector.from_model(model, run_dir=run_dir, tta=True)
        tta_threshold = tta_validation_threshold(detector, data_dir=data_dir)
        with_tta = _score_test_split(detector, tta_threshold, smoke.dataset, data_dir, out / "evaluation_tta")

    print("[4/5] Exporting a TF Serving SavedModel")
    export_dir = export.export_saved_model(
        model, out / "export" / "gsfc_tf" / "1", overwrite=True, operating_threshold=threshold
    )
    print(f"      wrote {export_dir}")
    _catalogue_fits_cutouts(export_dir, out / "catalogue")
    print(_headline(plain, with_tta, out))
    return 0


def _catalogue_fits_cutouts(export_dir: Path, out: Path) -> None:
    """Step 5: `predict`'s catalogue of synthetic FITS cutouts, with the export and its recorded threshold."""
    from gsfc_tf import catalogue
    from gsfc_tf.detector import default_min_score, load_detector
    from tfds_clumpscout.clump_scout.synthetic_fits import write_synthetic_fits

    print(f"[5/5] Cataloguing {DEMO_CUTOUTS} synthetic u, g, r, i, z FITS cutouts with the export, as predict does")
    paths, truth = write_synthetic_fits(out, DEMO_CUTOUTS, seed=0, overwrite=True)
    detector = load_detector(export_dir)
    result = catalogue.predict_catalogue(detector, paths, min_score=default_min_score(detector))
    written = catalogue.write_catalogue(result.rows, out / "clumps.csv")
    catalogue.write_image_table(result.images, catalogue.image_table_path(written))
    print(f"      {len(result.rows)} clumps with host and photometry columns in {written}; the true fluxes in {truth}")


def _score_test_split(detector, threshold: float | None, dataset: str, data_dir: str, out: Path) -> dict | None:
    """Scores the test split at `threshold` (chosen on validation), prints the result and writes it to `out`.

    Returns:
        metrics.json's `fixed_threshold` entry (completeness, purity, threshold), None without a threshold.
    """
    from gsfc_tf import data
    from gsfc_tf.split_evaluation import evaluate_examples, write_evaluation

    if threshold is None:
        print("      no operating point on validation (too little training): nothing to score at")
        return None
    result = evaluate_examples(detector, data.load_tfds_split(dataset, "test", data_dir=data_dir), fixed_threshold=threshold)
    written = write_evaluation(result, out)
    fixed = result.metrics["fixed_threshold"]
    centre = fixed["centre"]
    print(f"      test completeness {fixed['completeness']:.3f}, purity {fixed['purity']:.3f} "
          f"at score >= {threshold:.2f} (IoU >= 0.5); by centre {centre['completeness']:.3f} / {centre['purity']:.3f}; "
          f"AP50 {result.metrics['coco']['AP50']:.3f}")
    n_plots = sum(path.suffix == ".png" for path in written.values())
    print(f"      wrote metrics.json and {n_plots} plots to {out}")
    return fixed


def _headline(plain: dict | None, with_tta: dict | None, out: Path) -> str:
    """The demo's last line: what the detector achieved on the held-out test galaxies, and where everything is."""
    if plain is None:
        return f"Done: too little training to choose an operating point, so nothing was scored. Everything is in {out}."
    headline = (
        f"Done: on held-out test galaxies the detector finds {plain['completeness']:.1%} of the clumps "
        f"(completeness) and {plain['purity']:.1%} of its detections are clumps (purity)"
    )
    if with_tta is not None:
        headline += f"; with TTA {with_tta['completeness']:.1%} and {with_tta['purity']:.1%}"
    return f"{headline}. Everything is in {out}."
