"""`gsfc-tf evaluate`: score a trained model on a `clump_scout` split; write metrics.json and plots."""

from __future__ import annotations

import argparse
import math

from gsfc_tf.commands import add_tta_arguments
from gsfc_tf.conventions import CENTRE_MATCH_DISTANCE

__all__ = ["configure_parser", "run"]


def configure_parser(parser) -> None:
    parser.add_argument("--model", required=True, help="run directory, .keras file or SavedModel directory")
    parser.add_argument("--split", default="test", help="TFDS split (default test), e.g. validation or test[:100]")
    parser.add_argument(
        "--dataset",
        help="TFDS dataset/config (default: the one the model was trained on, from the run's config.json or the "
        "export's metadata; required for a .keras file outside its run directory or an older export)",
    )
    parser.add_argument("--data-dir", help="TFDS data dir")
    parser.add_argument("--manual-dir", help="manual dir of clump_scout/sdss (catalogue + cutouts)")
    parser.add_argument("--limit", type=int, help="score only the first N galaxies (quick looks)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per detector call (default 8)")
    parser.add_argument("--out", required=True, help="directory for metrics.json and the PNG plots")
    parser.add_argument(
        "--centre-distance", type=_distance, default=CENTRE_MATCH_DISTANCE, metavar="PX",
        help=f"also score matching by box centres at most PX apart, any box sides (default {CENTRE_MATCH_DISTANCE:g} "
        "px of the 200-px crop, about one SDSS PSF FWHM; 0 turns it off); IoU 0.5 stays the headline rule",
    )
    add_tta_arguments(parser)


def _distance(text: str) -> float:
    """A `--centre-distance`: pixels, >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a distance in px >= 0, got {text!r}")
    return value


def run(args) -> int:
    from gsfc_tf import data
    from gsfc_tf.detector import load_detector, run_dataset, validation_threshold
    from gsfc_tf.split_evaluation import evaluate_examples, headline, tta_validation_threshold, write_evaluation

    detector = load_detector(args.model, tta=args.tta, tta_merge=args.tta_merge)
    dataset = args.dataset or run_dataset(detector)
    if dataset is None:
        raise ValueError(
            f"{args.model} does not record the dataset it was trained on (a .keras file outside its run directory, "
            "or an export from before exports recorded it); name the one to score with --dataset, "
            "e.g. --dataset clump_scout/synthetic."
        )
    if detector.tta and detector.run_dir is not None:
        # The run's validation.json threshold was chosen without TTA: choose one under it.
        print("Choosing the threshold under TTA on the run's validation split first")
        threshold = tta_validation_threshold(detector, data_dir=args.data_dir, manual_dir=args.manual_dir)
    else:
        threshold = validation_threshold(detector)
    examples = data.load_tfds_split(dataset, args.split, data_dir=args.data_dir, manual_dir=args.manual_dir)
    result = evaluate_examples(
        detector, examples, batch_size=args.batch_size, limit=args.limit, fixed_threshold=threshold,
        centre_match_distance=args.centre_distance or None,
    )
    written = write_evaluation(result, args.out)
    print(f"{dataset} {args.split}, {len(result.truths)} galaxies: {headline(result.metrics)}")
    print("Wrote " + ", ".join(str(path) for path in written.values()))
    return 0
