"""`make demo`: the whole chain on CPU, on synthetic Clump-Scout-like galaxies.

Builds `clump_scout/synthetic` into `<out>/tensorflow_datasets` and draws galaxies with
their true clumps.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["configure_parser", "run"]


def configure_parser(parser) -> None:
    parser.add_argument("--out", default="out/demo", help="where the dataset, run and figures go")
    parser.add_argument("--dataset", default="clump_scout/synthetic", help="TFDS name/config to build")


def run(args) -> int:
    import tensorflow_datasets as tfds

    import tfds_clumpscout  # noqa: F401
    from gsfc_tf import data, evaluation, plots

    out = Path(args.out)
    data_dir = out / "tensorflow_datasets"
    builder = tfds.builder(args.dataset, data_dir=str(data_dir))
    builder.download_and_prepare()
    print(f"Built {args.dataset} in {builder.data_dir}: {builder.info.splits}")

    images, truths = [], []
    for example in builder.as_dataset(split="train").take(16):
        image, boxes_yxyx, labels = data.from_tfds_example(example)
        images.append(image.numpy())
        truths.append(evaluation.ImageBoxes(boxes_yxyx.numpy(), labels.numpy()))
    figure = plots.plot_detections_grid(images, truths)
    path = out / "galaxies.png"
    figure.savefig(path, dpi=120)
    print(f"Wrote {path}")
    return 0
