"""`gsfc-tf survey`: clump catalogue of a whole survey on Apache Beam, resumable (see `gsfc_tf.survey`).

Beam pipeline options follow `--`, e.g.
`gsfc-tf survey --model m --inputs 'cutouts/*.png' --out out/survey -- --direct_num_workers=2`.

Reruns under one --out skip the inputs that earlier runs processed (compared by absolute path, so
`a.png` and `/data/a.png` are one input) and refuse an input that would take a galaxy id an earlier
run gave another file. Inputs, the manifest and the outputs are checked before the model loads.
"""

from __future__ import annotations

import argparse

from gsfc_tf.commands import add_band_arguments, add_host_mask_argument, add_min_score_argument, band_options

__all__ = ["configure_parser", "run"]


def configure_parser(parser) -> None:
    parser.add_argument("--model", required=True, help="exported SavedModel, run directory or .keras file")
    parser.add_argument("--inputs", nargs="+", default=[], metavar="PATTERN",
                        help="cutout files or glob patterns (quote globs; local ones expand as in predict, "
                             "'**/' matching any folders); local, gs:// or s3://")
    parser.add_argument("--manifest",
                        help="CSV of inputs (UTF-8, a BOM allowed): a path column (relative to the manifest), optional "
                             "id, ra [0, 360) and dec [-90, 90] (degrees) columns; each path once")
    parser.add_argument("--out", required=True, metavar="PREFIX",
                        help="output prefix, not a directory (out/survey, not out/): PREFIX-<run id>-inputs.csv, "
                             "PREFIX-<run id>-{clumps,images}-*.parquet and PREFIX-<run id>-done.json")
    parser.add_argument("--runner", default="DirectRunner", help="Beam runner (default DirectRunner)")
    add_min_score_argument(parser, use="keep clumps scoring at least this")
    parser.add_argument("--batch-size", type=int, default=8, help="cutouts per detector call (default 8)")
    add_host_mask_argument(parser, note=", as in predict; one value for every run under --out")
    add_band_arguments(parser)
    parser.add_argument("--num-shards", type=int, default=0, help="Parquet shards per table (default: the runner's choice)")
    parser.add_argument("--merge", choices=("csv", "fits"),
                        help="also write the whole catalogue as PREFIX.FORMAT and its image table (with the manifest's "
                             "galaxy_ra, galaxy_dec) as PREFIX.images.FORMAT, each input once with its latest row")
    parser.add_argument("--retry-unreadable", action="store_true",
                        help="also process again the inputs that the latest run to see them found unreadable")
    parser.add_argument("beam_options", nargs=argparse.REMAINDER, metavar="-- BEAM_OPTIONS",
                        help="Beam pipeline options, after --")


def run(args) -> int:
    from gsfc_tf.survey import run_survey

    beam_options = args.beam_options[1:] if args.beam_options[:1] == ["--"] else args.beam_options
    result = run_survey(
        args.model, args.out, patterns=args.inputs, manifest=args.manifest, min_score=args.min_score,
        batch_size=args.batch_size, num_shards=args.num_shards, merge=args.merge,
        retry_unreadable=args.retry_unreadable, host_mask=args.host_mask, band_options=band_options(args),
        pipeline_args=[f"--runner={args.runner}", *beam_options],
    )
    threshold = f"score >= {result.threshold.value:.2f} ({result.threshold.source})"
    run = result.run
    if run is None:
        print(f"All {result.n_inputs} inputs were done by earlier runs under {args.out}; nothing to run.")
    else:
        counts = ", ".join(f"{count} {status}" for status, count in run["status_counts"].items())
        print(
            f"Run {run['run_id']}: {run['n_inputs']} inputs ({counts}), {run['n_clumps']} clumps at {threshold}; "
            f"{result.n_already_done} inputs done by earlier runs skipped. Wrote {args.out}-{run['run_id']}-done.json"
        )
    for path in result.merged:
        print(f"Merged {path}")
    return 0
