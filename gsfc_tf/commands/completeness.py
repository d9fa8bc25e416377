"""`gsfc-tf completeness`: the selection function of a detector on your own FITS cutouts, by injecting clumps.

Artificial clumps are injected into each cutout at a grid of clump/host flux ratios and the
detector is run again, as `predict` runs it, to count how many it recovers
(`gsfc_tf.completeness`). Writes into --out: `injections.ecsv` (every injected clump and whether
it was recovered), `galaxies.ecsv` (each cutout's own curve, to correct its counts),
`completeness.json` (recovered fractions against flux ratio, SNR, galactocentric distance and host
axis ratio; the flux ratio at 50 % and 80 % completeness; the cost) and `completeness.png`.
Inputs are FITS cutouts whose image HDUs name their bands (the layout `predict` measures; the
README's clump science section), with g, r, i and the flag band; any other input is refused
with one line before the model loads.
"""

from __future__ import annotations

import argparse

from gsfc_tf.commands import add_band_arguments, add_min_score_argument, band_options

__all__ = ["configure_parser", "run"]

# Mirror gsfc_tf.completeness.DEFAULT_FLUX_RATIOS' range and count (tested): parsers stay light.
_FLUX_RATIO_RANGE = (0.01, 0.30)
_N_FLUX_RATIOS = 8
_PSFS = ("gaussian", "moffat")


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def _colour(text: str) -> tuple[str, tuple[float, float]]:
    """A `--colour` value: NAME=LOW:HIGH, e.g. u-g=0.2:1.0."""
    try:
        name, bounds = text.split("=")
        low, high = (float(v) for v in bounds.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be BLUER-REDDER=LOW:HIGH (e.g. u-g=0.2:1.0), got {text!r}") from None
    if "-" not in name or not low <= high:
        raise argparse.ArgumentTypeError(f"must be BLUER-REDDER=LOW:HIGH with LOW <= HIGH, got {text!r}")
    return name.strip().lower(), (low, high)


def configure_parser(parser) -> None:
    parser.add_argument("--model", required=True, help="exported SavedModel, run directory or .keras file")
    parser.add_argument("--inputs", nargs="+", required=True, metavar="PATTERN",
                        help="FITS cutouts naming their bands, or glob patterns (quote globs)")
    parser.add_argument("--out", required=True, help="folder for the tables, completeness.json and the plot")
    add_min_score_argument(parser, use="detections kept, as predict keeps them")
    parser.add_argument("--flux-ratio-range", nargs=2, type=float, default=_FLUX_RATIO_RANGE, metavar=("MIN", "MAX"),
                        help="clump/host flux ratios in the flag band, log-spaced from MIN to MAX "
                        f"(default {_FLUX_RATIO_RANGE[0]:g} {_FLUX_RATIO_RANGE[1]:g})")
    parser.add_argument("--n-flux-ratios", type=_positive_int, default=_N_FLUX_RATIOS,
                        help=f"number of flux ratios (default {_N_FLUX_RATIOS})")
    parser.add_argument("--clumps-per-ratio", type=_positive_int, default=6,
                        help="clumps injected into each cutout at each flux ratio (default 6)")
    parser.add_argument("--clumps-per-image", type=_positive_int, default=3,
                        help="clumps injected at once, kept apart (default 3)")
    parser.add_argument("--flag-band", help="band of the flux ratio (default: each cutout's bluest, u for SDSS)")
    parser.add_argument("--colour", type=_colour, action="append", default=[], metavar="BLUER-REDDER=LOW:HIGH",
                        help="AB colour range of the injected clumps for a pair of adjacent bands, drawn uniformly; "
                        "repeat for several (defaults: young star-forming clumps, gsfc_tf.injection.DEFAULT_COLOUR_RANGES)")
    parser.add_argument("--max-size-fwhm", type=float, default=0.0,
                        help="resolved clumps: intrinsic Gaussian sigma drawn up to this many PSF FWHMs (default 0: point-like)")
    parser.add_argument("--psf", choices=_PSFS, default="gaussian",
                        help="PSF profile of the injected clumps, with the band's header FWHM (default gaussian)")
    parser.add_argument("--moffat-beta", type=float, default=3.0, help="beta of --psf moffat (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); the same seed, the same tables")
    parser.add_argument("--batch-size", type=_positive_int, default=8, help="pictures per detector call (default 8)")
    add_band_arguments(parser)


def run(args) -> int:
    import numpy as np

    from gsfc_tf import catalogue, completeness
    from gsfc_tf.injection import DEFAULT_COLOUR_RANGES, gaussian_psf, moffat_psf

    low, high = args.flux_ratio_range
    if not 0 < low <= high < 1:
        raise ValueError(f"--flux-ratio-range must satisfy 0 < MIN <= MAX < 1, got {low:g} {high:g}")
    ratios = np.unique(np.geomspace(low, high, args.n_flux_ratios))
    settings = completeness.InjectionSettings(
        flux_ratios=tuple(float(r) for r in ratios),
        clumps_per_ratio=args.clumps_per_ratio,
        clumps_per_image=args.clumps_per_image,
        flag_band=args.flag_band and args.flag_band.lower(),
        colour_ranges={**DEFAULT_COLOUR_RANGES, **dict(args.colour)},
        max_size_fwhm=args.max_size_fwhm,
        psf=moffat_psf(args.moffat_beta) if args.psf == "moffat" else gaussian_psf,
        seed=args.seed,
    )
    paths = catalogue.expand_image_paths(args.inputs)
    # Inputs are checked before the model loads: a bad file never costs a model load.
    completeness.check_inputs(paths, flag_band=settings.flag_band, band_options=band_options(args))

    from gsfc_tf.detector import default_min_score, load_detector

    detector = load_detector(args.model)
    min_score = default_min_score(detector) if args.min_score is None else args.min_score
    result = completeness.measure_completeness(
        detector, paths, min_score=min_score, settings=settings, batch_size=args.batch_size, progress=True,
        band_options=band_options(args),
    )
    written = completeness.write_completeness(result, args.out)
    summary = result.summary
    at = {rule: summary["flux_ratio_at"][rule] for rule in completeness.MATCH_RULES}

    def describe(point) -> str:
        if point["how"] == "not_reached":
            return "not reached"
        return f"{'<= ' if point['how'] == 'below_grid' else ''}{100 * point['flux_ratio']:.2g} %"

    levels = ", ".join(
        f"{100 * point['level']:.0f} % at {describe(point)} ({rule})" for rule in at for point in at[rule]
    )
    print(
        f"{summary['n_injected']} clumps injected into {summary['n_galaxies_injected']} of {summary['n_galaxies']} "
        f"galaxies (score >= {min_score:.2f}); completeness {levels}; "
        f"{1000 * summary['cost']['seconds_per_injected_clump']:.1f} ms per injected clump. "
        f"Wrote {', '.join(str(path) for path in written.values())}"
    )
    return 0
