"""`gsfc-tf export`: a trained model as a TF Serving SavedModel (`EXPORT_DIR/<version>`)."""

from __future__ import annotations

from gsfc_tf.commands import add_min_score_argument, add_tta_arguments

__all__ = ["configure_parser", "run"]


def configure_parser(parser) -> None:
    parser.add_argument("--model", required=True, help="training run directory (holding model.keras) or a .keras file")
    parser.add_argument("--out", required=True, help="version directory to write, e.g. exports/gsfc/1")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version directory")
    add_min_score_argument(
        parser, use="serve detections scoring at least this (serving_default, serving_tensor) and record it as "
        "the operating threshold",
    )
    add_tta_arguments(parser)


def run(args) -> int:
    from gsfc_tf.detector import (
        BYTES_SIGNATURE,
        TENSOR_SIGNATURE,
        Detector,
        load_keras_model,
        run_dataset,
        validation_threshold,
    )
    from gsfc_tf.export import check_export_dir, export_saved_model

    # User errors raise ValueError/FileNotFoundError/FileExistsError: cli.main prints them, exit 2.
    check_export_dir(args.out, overwrite=args.overwrite)
    model, model_path = load_keras_model(args.model)
    detector = Detector.from_model(model, run_dir=model_path.parent, tta=args.tta)
    # By default the run's validation.json beside model.keras, so catalogues from the export use the
    # same threshold; none under TTA, whose scores differ from those the threshold was chosen on.
    threshold = validation_threshold(detector) if args.min_score is None else args.min_score
    export_dir = export_saved_model(
        model, args.out, overwrite=args.overwrite, operating_threshold=threshold, tta=args.tta, tta_merge=args.tta_merge,
        dataset=run_dataset(detector),
    )
    recorded = "no operating threshold" if threshold is None else f"operating threshold {threshold:.2f}"
    print(f"Exported {model_path} to {export_dir} (signatures {BYTES_SIGNATURE}, {TENSOR_SIGNATURE}; {recorded})")
    return 0
