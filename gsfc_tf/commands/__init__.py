"""Thin `gsfc-tf` sub-commands: each parses arguments and calls the public API."""

import argparse
import math

# Mirror gsfc_tf.tta.TTA_MERGES, DEFAULT_TTA_MERGE and gsfc_tf.detector.DEFAULT_MIN_SCORE (tested):
# parsers stay TensorFlow-free.
_TTA_MERGES = ("wbf", "nms")
_DEFAULT_MIN_SCORE = 0.5
# Mirror gsfc_tf.catalogue.HOST_MASK_MODES and DEFAULT_HOST_MASK (tested).
_HOST_MASK_MODES = ("drop", "flag", "off")
_DEFAULT_HOST_MASK = "drop"


def add_host_mask_argument(parser, *, note: str = "") -> None:
    """`--host-mask`: what the catalogue does with detections off the host galaxy (`catalogue.catalogue_galaxy`)."""
    parser.add_argument(
        "--host-mask", choices=_HOST_MASK_MODES, default=_DEFAULT_HOST_MASK,
        help="detections whose centre is off the host galaxy (or with no host at the centre): drop them "
        f"(default), flag them (off_host column), or do not segment the host (off){note}",
    )


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


def _score(text: str) -> float:
    """A `--min-score` value: a float in [0, 1], the range of detection scores."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan  # fails the range check, as "nan" does
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a score in [0, 1], got {text!r}")
    return value


def add_min_score_argument(parser, *, use: str) -> None:
    """`--min-score`: the minimum score, None when not given (`detector.threshold_or_default` then).

    Args:
        parser: the sub-command's parser.
        use: what the command does with it, the start of its help.
    """
    parser.add_argument(
        "--min-score", type=_score, metavar="SCORE",
        help=f"{use} (default: the model's validation operating threshold, else {_DEFAULT_MIN_SCORE}; "
        "needed with --tta)",
    )
