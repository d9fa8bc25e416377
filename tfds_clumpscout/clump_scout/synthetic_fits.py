"""Synthetic galaxies as SDSS-like multi-band FITS cutouts, with a truth table of their clumps.

`write_synthetic_fits` writes galaxy k of `synthetic.generate_bands(n, seed=seed)` (the same
galaxies, boxes and gri light as `generate_galaxies` and the `clump_scout/synthetic` data) to
one multi-extension FITS file per galaxy, and every clump's true position, box, label and fluxes
to one ECSV table beside them. `read_bands` (`gsfc_tf.bands.read_bands`) reads such a file back. Model-free: numpy and
astropy only.

File layout:
    The primary HDU holds no data; its header names the galaxy (OBJECT, RA, DEC, REDSHIFT).
    Then one image HDU per band in the order g, r, i, u, z (readers take bands by name,
    `gsfc_tf.bands`; a reader that takes the first three image HDUs as g, r, i sees the gri
    light too); each names its band (EXTNAME, FILTER) and carries
      - BUNIT 'nanomaggy' and MAGZP 22.5: AB magnitude = 22.5 - 2.5 log10(flux), as SDSS;
      - PSFFWHM (arcsec) and PIXSCALE (0.396 arcsec per pixel, SDSS's);
      - GAIN, Poisson counts per nanomaggy (the noise model's, for flux errors);
      - a TAN WCS centred on the galaxy's (RA, DEC), north up, east left.
    Then, per band in the same order, its PSF image (EXTNAME `PSF_<band>`, `synthetic.psf_image`;
    every band's PSF is the same): photometry corrects its apertures for it.
    Rows are stored bottom row first, as FITS images are: a reader that flips them to top row
    first (as `read_image` does) gets the generator's image frame, the frame of the boxes.

Flux units:
    The generator's unit (r-band sky noise 1 per pixel at noise scale 1) is
    `synthetic.NANOMAGGIES_PER_UNIT` nanomaggies. The generator maps the same nanomaggies to its
    composite as `read_image` maps a FITS cutout (`gsfc_tf.images.gri_composite`), with the
    stretch and Q it drew (the truth table's `lupton_stretch`, `lupton_q`): reading a written file
    with them gives the galaxy's `image` exactly, and so does `read_image`'s default where they
    are the defaults (a family with `lupton_stretch` and `lupton_q` fixed at them).

Shape shorthand: H = W = image size, N clumps of a galaxy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.wcs import WCS

from gsfc_tf import conventions
# The one reader of this layout, re-exported here beside its writer.
from gsfc_tf.bands import PSF_EXTNAME_PREFIX, BandImages, read_bands
from gsfc_tf.evaluation import ImageBoxes
from tfds_clumpscout.clump_scout.synthetic import (
    BAND_NAMES,
    NANOMAGGIES_PER_UNIT,
    REFERENCE_IMAGE_SIZE,
    TRAINING_FAMILY,
    RenderFamily,
    SyntheticBands,
    generate_bands,
    psf_image,
)

__all__ = [
    "FITS_BAND_ORDER",
    "NANOMAGGIES_PER_UNIT",
    "PIXEL_SCALE_ARCSEC",
    "TRUTH_TABLE_NAME",
    "ZERO_POINT",
    "BandImages",
    "read_bands",
    "truth_boxes",
    "truth_table",
    "write_galaxy_fits",
    "write_synthetic_fits",
]

PIXEL_SCALE_ARCSEC = 0.396
ZERO_POINT = 22.5  # AB magnitude of 1 nanomaggy
# g, r, i first: readers of gri FITS take the first three image HDUs.
FITS_BAND_ORDER = ("g", "r", "i", "u", "z")
TRUTH_TABLE_NAME = "truth.ecsv"


def _band_header(band: str, bands: SyntheticBands) -> fits.Header:
    size = bands.images.shape[-1]
    galaxy = bands.galaxy
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [galaxy.ra, galaxy.dec]
    wcs.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]  # FITS pixels count from 1
    # North up and east left once rows are shown top row first.
    wcs.wcs.cd = np.diag([-PIXEL_SCALE_ARCSEC, PIXEL_SCALE_ARCSEC]) / 3600.0
    header = wcs.to_header()
    header["EXTNAME"] = band
    header["FILTER"] = (band, "SDSS band")
    header["BUNIT"] = "nanomaggy"
    header["MAGZP"] = (ZERO_POINT, "AB mag of 1 BUNIT")
    header["PSFFWHM"] = (bands.psf_fwhm * PIXEL_SCALE_ARCSEC, "PSF FWHM, arcsec")
    header["PIXSCALE"] = (PIXEL_SCALE_ARCSEC, "arcsec per pixel")
    header["GAIN"] = (bands.gain / NANOMAGGIES_PER_UNIT, "Poisson counts per BUNIT")
    return header


def write_galaxy_fits(bands: SyntheticBands, path: str | Path, *, galaxy_id: str, overwrite: bool = False) -> Path:
    """Writes one galaxy's u, g, r, i, z light as a multi-extension FITS file (module docstring).

    Args:
        bands: the galaxy, from `synthetic.generate_bands`.
        path: the file to write.
        galaxy_id: the name in the primary header's OBJECT.
        overwrite: replace an existing file.

    Returns:
        The path written.
    """
    path = Path(path)
    primary = fits.PrimaryHDU()
    primary.header["OBJECT"] = galaxy_id
    primary.header["RA"] = (bands.galaxy.ra, "deg")
    primary.header["DEC"] = (bands.galaxy.dec, "deg")
    primary.header["REDSHIFT"] = bands.galaxy.redshift
    hdus = [primary]
    for band in FITS_BAND_ORDER:
        plane = bands.images[BAND_NAMES.index(band)] * np.float32(NANOMAGGIES_PER_UNIT)
        # FITS rows run upward: the image's bottom row is stored first.
        hdus.append(fits.ImageHDU(np.ascontiguousarray(plane[::-1]), header=_band_header(band, bands)))
    psf = psf_image(bands.galaxy.choices)
    hdus += [fits.ImageHDU(psf, name=f"{PSF_EXTNAME_PREFIX}{band.upper()}") for band in FITS_BAND_ORDER]
    fits.HDUList(hdus).writeto(path, overwrite=overwrite)
    return path


def truth_table(bands: SyntheticBands, *, galaxy_id: str, file_name: str) -> Table:
    """One row per clump: true position, box, label, fluxes and the host's, with units.

    Columns: `galaxy_id`, `file`, `clump_id`, `label` (0 clump, 1 odd clump), `x`, `y` and the box
    (`x_min`, `y_min`, `x_max`, `y_max`) in image coordinates (px, origin top-left, y down; the
    frame of `gsfc_tf.catalogue`), `x_fits`, `y_fits` (astropy's 0-based pixel coordinates in
    the stored arrays), `ra`, `dec`, `snr_r` (the generator's box SNR), `sigma_major`,
    `sigma_minor` (intrinsic Gaussian sigmas, px), `psf_fwhm` (px), then per band b:
    `flux_b` (total PSF-blurred flux), `host_flux_b` (disc, bulge, HII regions and clumps within
    the image, no stars or field galaxies) and `flux_ratio_b` = flux_b / host_flux_b; the
    host's `host_x`, `host_y`, `host_axis_ratio`, `host_scale_length` (px); and how the galaxy
    was rendered, every field of its `synthetic.RenderChoices` (`psf_shape`, `lupton_q`...).
    """
    galaxy = bands.galaxy
    size = bands.images.shape[-1]
    n = len(galaxy.labels)
    y, x = bands.clump_yx[:, 0].astype(np.float64), bands.clump_yx[:, 1].astype(np.float64)
    x_fits, y_fits = conventions.image_to_fits_pixels(x, y, height=size)
    ra, dec = WCS(_band_header("r", bands)).all_pix2world(x_fits, y_fits, 0)
    table = Table()
    table["galaxy_id"] = [galaxy_id] * n
    table["file"] = [file_name] * n
    table["clump_id"] = np.arange(n)
    table["label"] = galaxy.labels
    table["x"], table["y"] = x * u.pix, y * u.pix
    for k, name in enumerate(("y_min", "x_min", "y_max", "x_max")):
        table[name] = galaxy.boxes_yxyx[:, k].astype(np.float64) * u.pix
    table["x_fits"], table["y_fits"] = x_fits * u.pix, y_fits * u.pix
    table["ra"], table["dec"] = ra * u.deg, dec * u.deg
    table["snr_r"] = galaxy.snr
    table["sigma_major"] = bands.clump_sigma[:, 0].astype(np.float64) * u.pix
    table["sigma_minor"] = bands.clump_sigma[:, 1].astype(np.float64) * u.pix
    table["psf_fwhm"] = np.full(n, bands.psf_fwhm) * u.pix
    for k, band in enumerate(BAND_NAMES):
        flux = bands.clump_flux[:, k] * NANOMAGGIES_PER_UNIT
        host = bands.host_flux[k] * NANOMAGGIES_PER_UNIT
        table[f"flux_{band}"] = flux * u.nmgy
        table[f"host_flux_{band}"] = np.full(n, host) * u.nmgy
        table[f"flux_ratio_{band}"] = flux / host
    table["host_x"] = np.full(n, bands.host_yx[1]) * u.pix
    table["host_y"] = np.full(n, bands.host_yx[0]) * u.pix
    table["host_axis_ratio"] = np.full(n, bands.host_axis_ratio)
    table["host_scale_length"] = np.full(n, bands.host_scale_length) * u.pix
    for name, value in dataclasses.asdict(galaxy.choices).items():
        if name != "psf_fwhm":  # the column above, with its unit
            table[name] = [value] * n
    return table


def write_synthetic_fits(
    out_dir: str | Path,
    n: int,
    *,
    seed: int,
    image_size: int = REFERENCE_IMAGE_SIZE,
    family: RenderFamily = TRAINING_FAMILY,
    overwrite: bool = False,
    on_galaxy: Callable[[], None] | None = None,
) -> tuple[list[Path], Path]:
    """Writes `n` synthetic galaxies as FITS cutouts and their clumps' truth table.

    Galaxy k is `synthetic.generate_bands(n, seed=seed, image_size=image_size, family=family)`'s
    k-th, written to `galaxy_{k:05d}.fits` (galaxy id `galaxy_{k:05d}`); the truth (`truth_table`'s
    rows of every galaxy) goes to `TRUTH_TABLE_NAME` in the same folder.

    Args:
        out_dir: folder to write to (made if missing).
        n: number of galaxies (>= 1).
        seed: non-negative integer seed.
        image_size: side H = W of the images, px (>= 32); 200 is the Clump Scout crop the
            detector takes whole.
        family: the renderers the galaxies are drawn from (`synthetic.RenderFamily`).
        overwrite: replace existing files; otherwise an existing one is an error.
        on_galaxy: called after each galaxy is written (a progress bar's update).

    Returns:
        (the FITS paths in galaxy order, the truth table's path).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, tables = [], []
    for k, bands in enumerate(generate_bands(n, seed=seed, image_size=image_size, family=family)):
        galaxy_id = f"galaxy_{k:05d}"
        path = write_galaxy_fits(bands, out_dir / f"{galaxy_id}.fits", galaxy_id=galaxy_id, overwrite=overwrite)
        paths.append(path)
        tables.append(truth_table(bands, galaxy_id=galaxy_id, file_name=path.name))
        if on_galaxy is not None:
            on_galaxy()
    truth_path = out_dir / TRUTH_TABLE_NAME
    truth = vstack(tables)
    truth.meta.update(seed=seed, n_galaxies=n, image_size=image_size, zero_point=ZERO_POINT, family=family.name)
    truth.write(truth_path, format="ascii.ecsv", overwrite=overwrite)
    return paths, truth_path


def truth_boxes(truth: Table, file_name: str) -> ImageBoxes:
    """One file's true clump boxes as detections of score 1, to catalogue the truth as `predict`
    catalogues a detector's boxes (`gsfc_tf.catalogue.catalogue_galaxy`).

    Args:
        truth: the truth table (`truth_table`, or `TRUTH_TABLE_NAME` read back).
        file_name: a FITS file's name, as in the table's `file` column.
    """
    rows = truth[truth["file"] == file_name]
    boxes_yxyx = np.stack([np.asarray(rows[name], np.float64) for name in ("y_min", "x_min", "y_max", "x_max")], axis=1)
    return ImageBoxes(boxes_yxyx, np.asarray(rows["label"]), np.ones(len(rows)))
