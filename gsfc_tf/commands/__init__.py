"""Thin `gsfc-tf` sub-commands: each parses arguments and calls the public API."""

# Mirrors gsfc_tf.tta.TTA_MERGES and DEFAULT_TTA_MERGE (tested): parsers stay TensorFlow-free.
_TTA_MERGES = ("wbf", "nms")


def add_tta_arguments(parser) -> None:
    """`--tta` and `--tta-merge`: dihedral test-time augmentation (`gsfc_tf.tta`)."""
    parser.add_argument(
        "--tta", action="store_true",
        help="test-time augmentation: detect on the 8 flips/rotations of each image and merge (8x the compute)",
    )
    parser.add_argument(
        "--tta-merge", choices=_TTA_MERGES, default=_TTA_MERGES[0],
        help="how --tta merges the 8 views: wbf (weighted box fusion, default) or nms",
    )
