"""`gsfc-tf experiment train-size`: the paper's training-set-size experiment."""

from __future__ import annotations

from gsfc_tf.config import PRESETS, override

__all__ = ["configure_parser", "run"]


def configure_parser(parser) -> None:
    parser.add_argument("name", choices=["train-size"], help="which experiment")
    parser.add_argument("--sizes", required=True, help="comma-separated training-set sizes, e.g. 200,500,1000")
    parser.add_argument("--config", default="smoke", choices=sorted(PRESETS), help="named preset (default smoke)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (as in `gsfc-tf train`)")
    parser.add_argument("--split", default="test", help="split to score each run on (default test)")
    parser.add_argument("--data-dir", help="TFDS data dir")
    parser.add_argument("--manual-dir", help="manual dir of clump_scout/sdss")
    parser.add_argument("--out", required=True, help="experiment directory (one run per size inside)")


def run(args) -> int:
    from gsfc_tf.experiments import train_size_experiment

    try:
        sizes = [int(n) for n in args.sizes.split(",") if n.strip()]
    except ValueError:
        raise ValueError(f"--sizes must be comma-separated integers, got {args.sizes!r}.") from None
    config = override(PRESETS[args.config](), args.overrides)
    train_size_experiment(config, sizes, args.out, split=args.split, data_dir=args.data_dir, manual_dir=args.manual_dir)
    print(f"Wrote {args.out}/train_size.csv, train_size.json and train_size.png")
    return 0
