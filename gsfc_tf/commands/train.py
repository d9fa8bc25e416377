"""`gsfc-tf train`: train a preset, with `--set key=value` overrides, optionally resuming.

`--resume` starts from the run's saved config (or from `--config`, when given) with the `--set`
overrides applied; the trainer refuses any change but those in `trainer.RESUMABLE_CHANGES`, and a
damaged newest checkpoint unless `--resume-from-last-good` is given.
"""

from __future__ import annotations

import dataclasses
import logging

from gsfc_tf.config import PRESETS, override

__all__ = ["configure_parser", "run"]


def configure_parser(parser) -> None:
    parser.add_argument(
        "--config", choices=sorted(PRESETS),
        help="named preset (default smoke; with --resume, the run's saved config.json)",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config field, e.g. --set learning_rate=3e-4 --set detector.image_size=256",
    )
    parser.add_argument("--data-dir", help="TFDS data dir")
    parser.add_argument("--manual-dir", help="manual dir of clump_scout/sdss (catalogue + cutouts)")
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument(
        "--resume", action="store_true",
        help="continue from the last checkpoint in --out; only steps, epochs, validate_every, checkpoint_every "
        "and keep_checkpoints may change (steps and epochs not under a decaying learning rate)",
    )
    parser.add_argument(
        "--resume-from-last-good", action="store_true",
        help="as --resume, but when the newest checkpoints are damaged (cut short, corrupt, index lost), which "
        "--resume refuses by name, continue from the newest intact one and delete the damaged ones",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="start a new run in a non-empty --out, replacing its training files"
    )
    parser.add_argument("--strategy", help="override the config's tf.distribute strategy")


def run(args) -> int:
    from gsfc_tf.trainer import resumable_run_config, train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    resume = args.resume or args.resume_from_last_good
    if resume and args.config is None:
        base = resumable_run_config(args.out)
    else:
        base = PRESETS[args.config or "smoke"]()
    config = override(base, args.overrides)
    if args.strategy:
        config = dataclasses.replace(config, strategy=args.strategy)
    result = train(
        config, args.out, data_dir=args.data_dir, manual_dir=args.manual_dir, resume=resume,
        from_last_good=args.resume_from_last_good, overwrite=args.overwrite,
    )
    print(f"Trained {result.steps} steps; model: {result.model_path}")
    if result.validation is not None:
        print(
            f"Validation completeness {result.validation['completeness']:.3f}, "
            f"purity {result.validation['purity']:.3f}"
        )
    return 0
