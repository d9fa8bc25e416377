"""Named band images of a multi-band FITS cutout: the one reader of those layouts.

Model-free (numpy and astropy; no TensorFlow). `gsfc_tf.images.read_image` takes its g, r, i
planes by the same names (`band_name`); `read_bands` reads every band with what photometry
needs (`gsfc_tf.photometry.clump_photometry`, `gsfc_tf.host.segment_host`).

File layout (what `tfds_clumpscout.clump_scout.synthetic_fits.write_galaxy_fits` writes):
    One 2-D image HDU per band, in any order (a primary HDU without data is skipped). Each
    names its band and may carry, in its own header:

      FILTER or EXTNAME   the band's name (case-insensitive; FILTER first). A file names its
                          bands when an image HDU has FILTER, or an EXTNAME that is one of
                          `KNOWN_BANDS`; then every image HDU must name one, once.
      MAGZP               AB magnitude of one unit of the pixel values (22.5 for nanomaggies).
      PSFFWHM             the PSF's FWHM, arcsec.
      PIXSCALE            arcsec per pixel (else the WCS's pixel scale).
      GAIN                Poisson counts per unit of the pixel values (for clumps' Poisson
                          noise; none: left out).
      a celestial WCS     sky positions; the first band's is the file's.

    An image HDU whose EXTNAME is `PSF_<band>` (`PSF_EXTNAME_PREFIX`) is not a band but that
    band's PSF image, for photometry's aperture correction (`photometry.clump_photometry`): any
    odd or even size, the PSF centred on the stamp's central pixel (SDSS's psField PSFs, as
    `read_PSF` reconstructs them, or any survey's), normalised here to unit sum. Bands without
    one are corrected for a Gaussian of their FWHM.

    Two more layouts give the same:
      a cube              a 3-D image HDU (B, H, W) whose BANDS keyword lists its planes' bands
                          (comma- or space-separated, e.g. 'u,g,r,i,z'); its header's values
                          serve every band.
      one file per band   a path holding `BAND_PLACEHOLDER` ("{band}"), e.g.
                          'cutouts/J1234_{band}.fits': each band of `KNOWN_BANDS` whose file
                          exists is that file's first image HDU (its FILTER, if any, must agree).

    Options of `read_bands` supply what the headers lack; a header value wins. Pixel values are
    taken as sky-subtracted flux per pixel. Arrays are returned as stored (bottom row first;
    `conventions.image_to_fits_pixels` maps image coordinates there).

Shape shorthand: H x W image size.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales

__all__ = [
    "BAND_OPTIONS",
    "BAND_PLACEHOLDER",
    "KNOWN_BANDS",
    "PSF_EXTNAME_PREFIX",
    "BandImages",
    "BandReadError",
    "band_name",
    "check_band_options",
    "names_its_bands",
    "psf_band",
    "read_bands",
    "read_hdus",
]

# Band names in wavelength order (bluest first); others sort after them, in file order.
KNOWN_BANDS = ("u", "g", "r", "i", "z", "y")
# EXTNAME prefix of a band's PSF image HDU (`PSF_R`, any case).
PSF_EXTNAME_PREFIX = "PSF_"
# Stands for the band's name in the path of a galaxy's one-file-per-band cutouts.
BAND_PLACEHOLDER = "{band}"
# `read_bands`' options for what headers lack: each a number for every band or band -> number.
BAND_OPTIONS = ("zero_point", "fwhm_arcsec", "pixel_scale_arcsec", "gain")


class BandReadError(ValueError):
    """A multi-band FITS file cannot give named bands with what photometry needs (one line)."""


@dataclasses.dataclass(frozen=True)
class BandImages:
    """The band planes of one multi-band FITS cutout, as stored (bottom row first).

    Attributes:
        images: band name (lower case) -> float32 [H, W] flux per pixel, bluest band first.
        zero_points: band name -> AB magnitude of one unit of flux.
        psf_fwhm_px: band name -> PSF FWHM, px.
        gains: band name -> Poisson counts per unit of flux (inf where unknown).
        wcs: the celestial WCS of the planes (astropy's 0-based pixel frame), or None.
        pixel_scale_arcsec: arcsec per pixel (NaN where unknown).
        psf_images: band name -> float64 [h, w] PSF image of unit sum, for the bands the file
            gives one (`PSF_EXTNAME_PREFIX`).
    """

    images: Mapping[str, np.ndarray]
    zero_points: Mapping[str, float]
    psf_fwhm_px: Mapping[str, float]
    gains: Mapping[str, float]
    wcs: WCS | None
    pixel_scale_arcsec: float
    psf_images: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def reference_fwhm_px(self) -> float:
        """The cutout's one PSF FWHM, px, where a step needs one: the r band's, else the bands' median."""
        return self.psf_fwhm_px.get("r", float(np.median(list(self.psf_fwhm_px.values()))))


def psf_band(header: fits.Header) -> str | None:
    """The band whose PSF image an HDU holds (EXTNAME `PSF_<band>`), lower case; None for other HDUs."""
    extname = str(header.get("EXTNAME", "")).strip()
    if extname.upper().startswith(PSF_EXTNAME_PREFIX) and len(extname) > len(PSF_EXTNAME_PREFIX):
        return extname[len(PSF_EXTNAME_PREFIX):].lower()
    return None


def band_name(header: fits.Header) -> str | None:
    """The band an image HDU holds: its FILTER, else its EXTNAME, stripped and lower case; None if
    neither or if it holds a PSF image (`psf_band`)."""
    if psf_band(header) is not None:
        return None
    for key in ("FILTER", "EXTNAME"):
        value = header.get(key)
        if value is not None and str(value).strip():
            return str(value).strip().lower()
    return None


def names_its_bands(headers) -> bool:
    """Whether image HDUs (their headers) name bands: one has FILTER, or an EXTNAME in `KNOWN_BANDS`."""
    return any(
        "FILTER" in header or str(header.get("EXTNAME", "")).strip().lower() in KNOWN_BANDS for header in headers
    )


def _per_band(option, band: str):
    if isinstance(option, Mapping):
        return option.get(band)
    return option


def _wavelength_order(names: list[str]) -> list[str]:
    return sorted(names, key=lambda name: (KNOWN_BANDS.index(name) if name in KNOWN_BANDS else len(KNOWN_BANDS)))


def check_band_options(options: Mapping | None) -> dict:
    """`options` as `read_bands` keyword arguments (a copy; {} for None).

    Raises:
        ValueError: a name not in `BAND_OPTIONS`, or a value that is not a number (or, but for
            `pixel_scale_arcsec`, band -> number).
    """
    options = dict(options or {})
    for name, value in options.items():
        if name not in BAND_OPTIONS:
            raise ValueError(f"unknown band option {name!r}: one of {', '.join(BAND_OPTIONS)}")
        values = value.values() if isinstance(value, Mapping) and name != "pixel_scale_arcsec" else [value]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ValueError(f"band option {name} must be a number{'' if name == 'pixel_scale_arcsec' else ' or band -> number'}, got {value!r}")
    return options


def _image_hdus(path: str | Path) -> list[tuple[fits.Header, np.ndarray]]:
    """(header, float32 data) of a FITS file's image HDUs that hold data."""
    try:
        with fits.open(path, memmap=False) as hdul:
            return [(hdu.header.copy(), np.asarray(hdu.data, np.float32)) for hdu in hdul
                    if hdu.is_image and hdu.data is not None and hdu.data.size > 0]
    except Exception as error:  # astropy raises many types for corrupt files
        raise BandReadError(f"{Path(path).name}: {type(error).__name__}: {error}") from error


def read_hdus(path: str | Path) -> list[tuple[fits.Header, np.ndarray]]:
    """(header, float32 data) of a cutout's image HDUs that hold data, in any layout of the module
    docstring: a cube listing its BANDS comes as one 2-D plane per band and each file of a
    `BAND_PLACEHOLDER` path as its band's plane, named by FILTER; PSF images are kept.

    Raises:
        BandReadError: an unreadable file, a cube whose BANDS do not match its planes, a
            per-band file without an image or naming another band, no file for any band.
    """
    if BAND_PLACEHOLDER in str(path):
        return _band_file_hdus(str(path))
    return _split_band_cubes(Path(path).name, _image_hdus(path))


def _split_band_cubes(name: str, hdus) -> list[tuple[fits.Header, np.ndarray]]:
    """`hdus` of file `name` with each cube that lists its BANDS split into one plane per band."""
    planes = []
    for header, data in hdus:
        if "BANDS" not in header:
            planes.append((header, data))
            continue
        bands = str(header["BANDS"]).replace(",", " ").split()
        if data.ndim != 3 or data.shape[0] != len(bands):
            raise BandReadError(f"{name}: BANDS lists {len(bands)} bands ({', '.join(bands)}) for data of shape {data.shape}")
        for band, plane in zip(bands, data):
            plane_header = header.copy()
            plane_header["FILTER"] = band
            plane_header.pop("EXTNAME", None)
            planes.append((plane_header, plane))
    return planes


def _band_file_hdus(pattern: str) -> list[tuple[fits.Header, np.ndarray]]:
    """The band planes (their first image HDU, named by the file) and PSF images of a galaxy's files per band."""
    hdus = []
    for band in KNOWN_BANDS:
        path = Path(pattern.replace(BAND_PLACEHOLDER, band))
        if not path.exists():
            continue
        in_file = _image_hdus(path)
        planes = [(header, data) for header, data in in_file if psf_band(header) is None]
        if not planes:
            raise BandReadError(f"{path.name}: holds no image")
        header, data = planes[0]
        named = str(header.get("FILTER", band)).strip().lower()
        if named != band:
            raise BandReadError(f"{path.name}: FILTER says band {named!r}, the file name {band!r}")
        header["FILTER"] = band
        hdus += [(header, data), *((h, d) for h, d in in_file if psf_band(h) is not None)]
    if not hdus:
        raise BandReadError(f"{Path(pattern).name}: no file for any band ({', '.join(KNOWN_BANDS)})")
    return hdus


def read_bands(
    path: str | Path,
    *,
    zero_point: float | Mapping[str, float] | None = None,
    fwhm_arcsec: float | Mapping[str, float] | None = None,
    pixel_scale_arcsec: float | None = None,
    gain: float | Mapping[str, float] | None = None,
    required: tuple[str, ...] = (),
) -> BandImages:
    """Reads every named band of a multi-band FITS cutout (module docstring).

    Args:
        path: the FITS file (optionally gzipped), or the pattern of a galaxy's files per band
            (holding `BAND_PLACEHOLDER`).
        zero_point: AB magnitude of one unit of flux, for bands without MAGZP (a number, or
            band name -> number).
        fwhm_arcsec: PSF FWHM (arcsec) for bands without PSFFWHM, likewise.
        pixel_scale_arcsec: arcsec per pixel where no header has PIXSCALE and the WCS gives none.
        gain: Poisson counts per unit of flux for bands without GAIN, likewise.
        required: bands the file must hold.

    Returns:
        `BandImages`, bands in wavelength order (`KNOWN_BANDS` first, others in file order).

    Raises:
        BandReadError: no named bands, an unnamed or repeated band, a required band missing,
            shapes differing between bands, no zero point, no or non-positive FWHM or pixel
            scale, or a PSF image that is not finite, 2-D and of positive sum, or of no band.
    """
    name = Path(path).name
    hdus = read_hdus(path)
    psf_images = {}
    for header, data in hdus:
        band = psf_band(header)
        if band is None:
            continue
        if band in psf_images:
            raise BandReadError(f"{name}: two PSF images of band {band!r}")
        if data.ndim != 2 or not np.all(np.isfinite(data)) or not data.sum() > 0:
            raise BandReadError(f"{name}: the PSF image of band {band!r} must be a finite 2-D image of positive sum")
        psf = data.astype(np.float64)
        psf_images[band] = psf / psf.sum()
    hdus = [(header, data) for header, data in hdus if psf_band(header) is None]
    if not names_its_bands([header for header, _ in hdus]):
        raise BandReadError(f"{name}: no image HDU names its band (FILTER, or EXTNAME one of {', '.join(KNOWN_BANDS)})")
    planes: dict[str, tuple[fits.Header, np.ndarray]] = {}
    for index, (header, data) in enumerate(hdus):
        band = band_name(header)
        if band is None:
            raise BandReadError(f"{name}: image HDU {index} names no band (FILTER or EXTNAME) while others do")
        if band in planes:
            raise BandReadError(f"{name}: band {band!r} appears twice")
        if data.ndim != 2:
            raise BandReadError(f"{name}: band {band!r} is not a 2-D image (shape {data.shape})")
        planes[band] = (header, data)
    missing = [band for band in required if band not in planes]
    if missing:
        raise BandReadError(f"{name}: bands {', '.join(planes)} lack {', '.join(missing)}")
    first = next(iter(planes))
    shapes = {band: data.shape for band, (_, data) in planes.items()}
    if len(set(shapes.values())) > 1:
        raise BandReadError(f"{name}: band shapes differ: {shapes}")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(planes[first][0]).celestial
    wcs = wcs if wcs.has_celestial else None
    scale = next((float(header["PIXSCALE"]) for header, _ in planes.values() if "PIXSCALE" in header), None)
    if scale is None:
        scale = pixel_scale_arcsec
    if scale is None and wcs is not None:
        scale = float(np.mean(proj_plane_pixel_scales(wcs)) * 3600.0)
    images, zero_points, fwhm_px, gains = {}, {}, {}, {}
    for band in _wavelength_order(list(planes)):
        header, data = planes[band]
        zp = header.get("MAGZP", _per_band(zero_point, band))
        if zp is None or not math.isfinite(float(zp)):
            raise BandReadError(f"{name}: band {band!r} has no zero point (MAGZP): give one (zero_point)")
        fwhm = header.get("PSFFWHM", _per_band(fwhm_arcsec, band))
        if fwhm is None:
            raise BandReadError(f"{name}: band {band!r} has no PSF FWHM (PSFFWHM, arcsec): give one (fwhm_arcsec)")
        if not float(fwhm) > 0:
            raise BandReadError(f"{name}: band {band!r} has PSF FWHM {fwhm!r} arcsec; it must be > 0")
        if scale is None or not scale > 0:
            raise BandReadError(f"{name}: no positive pixel scale (PIXSCALE or a WCS): give one (pixel_scale_arcsec)")
        band_gain = header.get("GAIN", _per_band(gain, band))
        images[band] = data
        zero_points[band] = float(zp)
        fwhm_px[band] = float(fwhm) / scale
        gains[band] = math.inf if band_gain is None else float(band_gain)
    unknown = [band for band in psf_images if band not in images]
    if unknown:
        raise BandReadError(f"{name}: PSF images of {', '.join(unknown)}, which are not among its bands {', '.join(images)}")
    return BandImages(images, zero_points, fwhm_px, gains, wcs, float(scale), psf_images)
