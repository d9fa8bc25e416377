"""The `gsfc-tf` command line.

Each sub-command lives in the module that owns its work; that module defines
`configure_parser(parser)` and `run(args) -> int | None`. Modules are imported only
when their command runs, so `gsfc-tf --help` stays fast and torch is never imported
unless the Zoobot converter is asked for. Before a command runs, the routine log lines of
TensorFlow and its libraries are hidden (`gsfc_tf.logs`) unless `--verbose` or `GSFC_TF_VERBOSE=1`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gsfc_tf import logs

__all__ = ["main"]

_COMMANDS = {
    "demo": ("gsfc_tf.commands.demo", "The whole chain on synthetic galaxies: data, training, evaluation, export."),
    "train": ("gsfc_tf.commands.train", "Train the detector on clump_scout (synthetic or sdss) under tf.distribute."),
    "experiment": ("gsfc_tf.commands.experiment", "Run an experiment: train-size (completeness/purity vs training-set size)."),
    "evaluate": ("gsfc_tf.commands.evaluate", "Score a trained model on a clump_scout split: metrics.json and plots."),
    "predict": ("gsfc_tf.commands.predict", "Find clumps in cutouts (PNG/JPEG/FITS) and write a clump catalogue."),
    "export": ("gsfc_tf.commands.export", "Export a trained model as a TF Serving SavedModel."),
    "survey": ("gsfc_tf.commands.survey", "Clump catalogue of a whole survey on Apache Beam (Parquet shards, resumable)."),
    "completeness": (
        "gsfc_tf.commands.completeness",
        "Completeness on your own FITS cutouts by injecting clumps: the selection function against flux ratio.",
    ),
    "synthetic-fits": (
        "gsfc_tf.commands.synthetic_fits",
        "Write synthetic galaxies as SDSS-like ugriz FITS cutouts with a truth table of their clumps' fluxes.",
    ),
    "zoobot-weights": (
        "gsfc_tf.backbones.convert",
        "Convert Zoobot/timm EfficientNet-B0 or ResNet50 weights to a Keras .weights.h5 file.",
    ),
}


def _build_parser(argv: list[str]) -> argparse.ArgumentParser:
    # `--verbose` goes before or after the command; without a default, the command's parser cannot
    # overwrite the value the main parser read.
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "--verbose", action="store_true", default=argparse.SUPPRESS,
        help="show the start-up and routine log lines of TensorFlow, absl and Beam, hidden by default "
        f"(also {logs.VERBOSE_ENV}=1)",
    )
    parser = argparse.ArgumentParser(prog="gsfc-tf", description=__doc__.splitlines()[0], parents=[verbose])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if a in _COMMANDS), None)
    for name, (module_name, help_text) in _COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text, parents=[verbose])
        if name == chosen:
            module = importlib.import_module(module_name)
            module.configure_parser(sub)
            sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command; bad input or a failed run prints one clear line, not a traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _build_parser(argv).parse_args(argv)
    if not (vars(args).get("verbose") or logs.verbose_requested()):
        logs.hide_routine_library_logs()
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"gsfc-tf {args.command}: error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:
        print(f"gsfc-tf {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
