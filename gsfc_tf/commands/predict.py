"""`gsfc-tf predict`: find clumps in cutouts (PNG/JPEG/FITS) and write a clump catalogue.

Boxes and centres are pixels of each original cutout (origin at the top-left corner, y down);
RA/Dec come from the cutout's WCS when it is a FITS file with one, and are empty otherwise. The host
galaxy is segmented in every cutout; detections off it are dropped (`--host-mask`: drop, flag or off).
FITS cutouts whose HDUs name their bands get clump photometry (`gsfc_tf.catalogue` lists the columns);
--zero-point, --psf-fwhm, --pixel-scale and --gain supply what their headers lack.
Beside the catalogue (`clumps.csv`) the image table (`clumps.images.csv`) lists every input with its
galaxy id, status (detected / no_clumps / unreadable), reason, number of clumps and NaN/infinite
pixels. Unreadable inputs are reported and skipped; the command fails only if none could be read
(then the catalogue is written empty, so the two tables always come from one run). Outputs are
checked before the model loads: neither table may be one of the inputs or an image.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from gsfc_tf.commands import (
    add_band_arguments,
    add_host_mask_argument,
    add_min_score_argument,
    add_tta_arguments,
    band_options,
)

if TYPE_CHECKING:
    from gsfc_tf.catalogue import PredictionResult

__all__ = ["configure_parser", "format_summary", "run"]


def configure_parser(parser) -> None:
    parser.add_argument("--model", required=True, help="run directory, .keras file or SavedModel directory")
    parser.add_argument("images", nargs="+", metavar="IMAGES", help="cutout files or glob patterns (quote globs)")
    parser.add_argument(
        "--out",
        help="catalogue file (default clumps.csv, or clumps.fits with --format fits); the image table goes "
        "beside it (clumps.images.csv)",
    )
    parser.add_argument(
        "--format", choices=("csv", "fits"),
        help="catalogue format (default: named by the --out suffix, .fits/.fit/.fts or .csv; else csv)",
    )
    add_min_score_argument(parser, use="keep clumps scoring at least this")
    parser.add_argument("--batch-size", type=int, default=8, help="images per detector call (default 8)")
    add_host_mask_argument(parser)
    add_band_arguments(parser)
    add_tta_arguments(parser)


def format_summary(result: PredictionResult) -> str:
    """One line: galaxies processed, clumps found, inputs skipped."""
    galaxies = sum(image.status == "detected" for image in result.images)
    return (
        f"{len(result.rows)} clumps in {galaxies} of {len(result.processed)} galaxies; "
        f"{len(result.skipped)} unreadable input{'s' if len(result.skipped) != 1 else ''} skipped"
    )


def run(args) -> int:
    from gsfc_tf import catalogue
    from gsfc_tf.detector import default_min_score, load_detector

    # Inputs and both outputs are checked before the model is loaded, so a bad --out never costs a
    # run, and a shell-expanded `--out *.png` never overwrites a cutout.
    paths = catalogue.expand_image_paths(args.images)
    out = args.out or f"clumps.{args.format or 'csv'}"
    format = catalogue.catalogue_format(out, args.format)
    catalogue_path = catalogue.check_output_file(out, inputs=paths)
    table_path = catalogue.check_output_file(catalogue.image_table_path(catalogue_path), inputs=paths)
    detector = load_detector(args.model, tta=args.tta, tta_merge=args.tta_merge)
    min_score = default_min_score(detector) if args.min_score is None else args.min_score

    def report(path, error) -> None:
        print(f"warning: skipping {catalogue.printable(path)}: {error}", file=sys.stderr)

    result = catalogue.predict_catalogue(
        detector, paths, min_score=min_score, batch_size=args.batch_size, on_error=report, progress=True,
        host_mask=args.host_mask, band_options=band_options(args),
    )
    table_path = catalogue.write_image_table(result.images, table_path, format=format)
    catalogue_path = catalogue.write_catalogue(result.rows, catalogue_path, format=format)
    if result.with_bad_pixels:
        print(
            f"warning: {len(result.with_bad_pixels)} input(s) have NaN or infinite pixels, drawn black for the "
            f"detector (counts in the n_bad_pixels column of {table_path})",
            file=sys.stderr,
        )
    if not result.processed:
        print(
            f"error: none of the {len(result.skipped)} inputs could be read (reasons in {table_path}); "
            f"{catalogue_path} is empty",
            file=sys.stderr,
        )
        return 1
    print(f"{format_summary(result)} (score >= {min_score:.2f}). Wrote {catalogue_path} and {table_path}")
    return 0
