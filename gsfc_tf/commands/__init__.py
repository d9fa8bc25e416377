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


# Mirror gsfc_tf.bands.BAND_OPTIONS (tested): option name -> (flag, what it gives).
_BAND_OPTIONS = {
    "zero_point": ("--zero-point", "AB magnitude of one pixel unit (22.5 for nanomaggies)"),
    "fwhm_arcsec": ("--psf-fwhm", "PSF FWHM, arcsec"),
    "pixel_scale_arcsec": ("--pixel-scale", "arcsec per pixel"),
    "gain": ("--gain", "Poisson counts per pixel unit"),
}


def _band_values(text: str):
    """A band option's value: one number for every band ("22.5") or per band ("u=22.3,g=22.5")."""
    try:
        if "=" not in text:
            return float(text)
        pairs = [item.split("=") for item in text.split(",") if item.strip()]
        return {band.strip().lower(): float(value) for band, value in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or band=number pairs (u=22.3,g=22.5), got {text!r}") from None


def add_band_arguments(parser) -> None:
    """`--zero-point`, `--psf-fwhm`, `--pixel-scale`, `--gain`: what FITS band headers lack (`bands.read_bands`)."""
    for name, (flag, what) in _BAND_OPTIONS.items():
        per_band = "" if name == "pixel_scale_arcsec" else " (one number, or per band: u=...,g=...)"
        parser.add_argument(
            flag, dest=name, type=_band_values if per_band else float, metavar="VALUE",
            help=f"{what}{per_band}, for FITS bands whose headers lack it; a header value wins",
        )


def band_options(args) -> dict:
    """The `add_band_arguments` given, as `bands.read_bands` keyword arguments."""
    return {name: getattr(args, name) for name in _BAND_OPTIONS if getattr(args, name) is not None}


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
