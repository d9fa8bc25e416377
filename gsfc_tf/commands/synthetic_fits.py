"""`gsfc-tf synthetic-fits`: synthetic galaxies as SDSS-like u, g, r, i, z FITS cutouts, with their truth.

The galaxies of `clump_scout/synthetic`'s generator (`tfds_clumpscout.clump_scout.synthetic_fits`):
one multi-extension FITS file per galaxy in nanomaggies with a TAN WCS, PSF FWHM, zero point and
gain in each band's header, and `truth.ecsv` listing every clump's position, box, label, flux per
band, its host's flux and the clump/host ratio: a survey to try `predict` and `survey` on, with
the answers known.
"""

from __future__ import annotations

__all__ = ["configure_parser", "run"]


def _positive(text: str) -> int:
    import argparse

    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def configure_parser(parser) -> None:
    parser.add_argument("--out", required=True, help="folder for galaxy_NNNNN.fits and truth.ecsv")
    parser.add_argument("--n", type=_positive, default=20, help="number of galaxies (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); the same seed, the same galaxies")
    parser.add_argument(
        "--image-size", type=_positive, default=200,
        help="image side in px (default 200, the crop the detector takes whole; at least 32)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace files an earlier call wrote in --out")


def run(args) -> int:
    from pathlib import Path

    from tqdm.auto import tqdm

    from tfds_clumpscout.clump_scout import synthetic_fits

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file, not a folder")
    written = sorted(out.glob("galaxy_*.fits")) + sorted(out.glob(synthetic_fits.TRUTH_TABLE_NAME))
    if written and not args.overwrite:
        raise FileExistsError(
            f"{out} already holds {written[0].name}{' and more' if len(written) > 1 else ''}; "
            "pass --overwrite to replace them, or choose another --out"
        )
    for stale in written:  # fewer galaxies than last time must not leave old files beside the new truth
        stale.unlink()
    with tqdm(total=args.n, desc="synthetic-fits", unit="galaxy") as bar:
        paths, truth = synthetic_fits.write_synthetic_fits(
            out, args.n, seed=args.seed, image_size=args.image_size, on_galaxy=lambda: bar.update()
        )
    print(f"Wrote {len(paths)} FITS cutouts and {truth} (every clump's true fluxes) to {out}")
    return 0
