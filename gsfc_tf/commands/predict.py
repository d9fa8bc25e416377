"""`gsfc-tf predict`: find clumps in cutouts (PNG/JPEG/FITS) and write a clump catalogue.

Boxes and centres are pixels of each original cutout (origin at the top-left corner, y down);
RA/Dec come from the cutout's WCS when it is a FITS file with one, and are empty otherwise.
Unreadable inputs are reported and skipped; the command fails only if none could be read.
"""

from __future__ import annotations

import sys

__all__ = ["configure_parser", "run"]


def configure_parser(parser) -> None:
    parser.add_argument("--model", required=True, help="run directory, .keras file or SavedModel directory")
    parser.add_argument("images", nargs="+", metavar="IMAGES", help="cutout files or glob patterns (quote globs)")
    parser.add_argument("--out", default="clumps.csv", help="catalogue file (default clumps.csv)")
    parser.add_argument("--format", choices=("csv", "fits"), default="csv", help="catalogue format (default csv)")
    parser.add_argument(
        "--min-score", type=float,
        help="keep clumps scoring at least this (default: the run's validation operating threshold from "
        "validation.json, else 0.5)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="images per detector call (default 8)")


def run(args) -> int:
    from gsfc_tf import catalogue, inference

    detector = inference.load_detector(args.model)
    min_score = inference.default_min_score(detector) if args.min_score is None else args.min_score

    def report(path, error) -> None:
        print(f"warning: skipping {path}: {error}", file=sys.stderr)

    result = inference.predict_catalogue(
        detector, inference.expand_image_paths(args.images), min_score=min_score, batch_size=args.batch_size,
        on_error=report, progress=True,
    )
    if not result.processed:
        print(f"error: none of the {len(result.skipped)} inputs could be read; no catalogue written", file=sys.stderr)
        return 1
    path = catalogue.write_catalogue(result.rows, args.out, format=args.format)
    print(f"{inference.format_summary(result)} (score >= {min_score:.2f}). Wrote {path}")
    return 0
