"""Reading galaxy cutouts (PNG/JPEG/FITS) as uint8 RGB: the one reader of the builder and gsfc_tf.

Shape shorthand: H x W image size.

The TFDS builder (`tfds_clumpscout.clump_scout.preparation.load_cutout`) and the catalogue
(`gsfc_tf.catalogue.read_cutout`) both read through `read_image`, so a cutout becomes the same
pixels for training and for `gsfc-tf predict`, and the same pixels the SavedModel's decoder
makes of a PNG or JPEG. (`catalogue.read_galaxy` makes the picture of a FITS cutout with named
bands from the bands it reads for photometry, through `fits_picture`, `read_image`'s own.) numpy only at import (Pillow and astropy are imported when a file of
their kind is read); no TensorFlow, no tensorflow_datasets.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = [
    "COMPOSITE_WEIGHTS_GRI",
    "FITS_SUFFIXES",
    "LUPTON_Q",
    "LUPTON_STRETCH",
    "PICTURE_SUFFIXES",
    "Image",
    "UnreadableImageError",
    "fits_picture",
    "gri_composite",
    "read_image",
]

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")
# Picture formats a cutout may come in (Pillow reads more; these are the ones people use).
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")
# The one gri colour composite (`gri_composite`): of FITS cutouts and of the synthetic galaxies,
# so a detector trained on the generator's pictures sees a FITS cutout the same way. Band weights
# balance the colours as SDSS gri composites do; the stretch is in nanomaggies (SDSS's unit).
COMPOSITE_WEIGHTS_GRI = (1.8, 1.1, 0.85)
LUPTON_Q = 9.0
LUPTON_STRETCH = 0.468


class UnreadableImageError(ValueError):
    """A cutout exists but cannot be turned into an RGB crop."""


class Image(NamedTuple):
    """A cutout as read by `read_image`.

    Attributes:
        rgb: uint8 [H, W, 3], top row first.
        header: the g band's image HDU header when the file names its bands, else the first
            image HDU's `astropy.io.fits.Header` (FITS); None for PNG/JPEG.
        n_bad_pixels: pixels with a NaN or infinite value in any FITS plane, drawn as 0 (black);
            0 for PNG/JPEG.
    """

    rgb: np.ndarray
    header: object
    n_bad_pixels: int = 0


def gri_composite(g, r, i, *, lupton_q: float = LUPTON_Q, lupton_stretch: float = LUPTON_STRETCH) -> np.ndarray:
    """uint8 [H, W, 3] colour composite of g, r, i images [H, W] (i -> R, r -> G, g -> B).

    Lupton et al. (2004) asinh mapping (`astropy.visualization.make_lupton_rgb`) of the bands
    times `COMPOSITE_WEIGHTS_GRI`, with no minimum; rows keep their order.

    Args:
        g, r, i: linear images in the unit of `lupton_stretch` (nanomaggies for the defaults).
        lupton_q, lupton_stretch: ``Q`` and ``stretch`` of `make_lupton_rgb`.
    """
    # Deferred: astropy is slow to import and only FITS cutouts and the generator need it.
    from astropy.visualization import make_lupton_rgb

    weighted = [np.asarray(band, np.float32) * np.float32(weight) for band, weight in zip((g, r, i), COMPOSITE_WEIGHTS_GRI)]
    with np.errstate(invalid="ignore", divide="ignore"):  # astropy divides by 0 where I == 0
        return make_lupton_rgb(weighted[2], weighted[1], weighted[0], minimum=0.0, stretch=lupton_stretch, Q=lupton_q)


def _read_fits(path: Path, lupton_q: float, lupton_stretch: float) -> Image:
    # Deferred: astropy (which `bands` imports) is slow to import and only FITS cutouts need it.
    from gsfc_tf.bands import BandReadError, band_name, names_its_bands, psf_band, read_hdus

    # Any layout `gsfc_tf.bands` reads (a cube listing its BANDS as one plane per band, or one file
    # per band); PSF images are not planes.
    try:
        hdus = [(header, data) for header, data in read_hdus(path) if psf_band(header) is None]
    except BandReadError as error:
        raise UnreadableImageError(str(error)) from error
    headers, planes = [header for header, _ in hdus], [data for _, data in hdus]
    header = headers[0] if headers else None
    if len(planes) > 1 and names_its_bands(headers):
        # The file names its bands (`gsfc_tf.bands`): g, r, i by name, in any HDU order.
        named = {band_name(h): (h, p) for h, p in zip(headers, planes) if band_name(h) is not None}
        missing = [band for band in ("g", "r", "i") if band not in named]
        if missing:
            raise UnreadableImageError(
                f"{path.name}: names bands {', '.join(named)} but lacks {', '.join(missing)} (FILTER or EXTNAME)"
            )
        header, planes = named["g"][0], [named[band][1] for band in ("g", "r", "i")]
    if len(planes) == 1 and planes[0].ndim == 3 and planes[0].shape[0] == 3:
        g, r, i = planes[0]
    elif len(planes) == 1 and planes[0].ndim == 2:
        # Undo the band weights so that one plane is shown grey.
        g, r, i = (planes[0] / np.float32(weight) for weight in COMPOSITE_WEIGHTS_GRI)
    elif len(planes) >= 3 and all(p.ndim == 2 and p.shape == planes[0].shape for p in planes[:3]):
        g, r, i = planes[:3]
    else:
        raise UnreadableImageError(
            f"{path.name}: expected a (3, H, W) g,r,i cube, three 2-D g,r,i HDUs or one 2-D plane, got "
            f"{[p.shape for p in planes]}."
        )
    if not (np.isfinite(g) & np.isfinite(r) & np.isfinite(i)).any():
        raise UnreadableImageError(f"{path.name}: no finite pixel values (every pixel is NaN or infinite)")
    rgb, n_bad_pixels = fits_picture(g, r, i, lupton_q=lupton_q, lupton_stretch=lupton_stretch)
    return Image(rgb, header, n_bad_pixels)


def fits_picture(
    g, r, i, *, lupton_q: float = LUPTON_Q, lupton_stretch: float = LUPTON_STRETCH
) -> tuple[np.ndarray, int]:
    """The picture `read_image` makes of FITS g, r, i planes [H, W] as stored (bottom row first).

    NaN and infinite pixels (in any plane) are drawn black, the planes combined by
    `gri_composite` and the rows flipped to top row first. The selection function
    (`gsfc_tf.completeness`) rebuilds a cutout's picture after injecting clumps through it, so the
    detector sees exactly what `predict` would.

    Returns:
        (uint8 [H, W, 3] top row first, the number of pixels drawn black).
    """
    g, r, i = (np.asarray(p, np.float32) for p in (g, r, i))
    bad = ~(np.isfinite(g) & np.isfinite(r) & np.isfinite(i))
    g, r, i = (np.where(bad, 0.0, p) for p in (g, r, i))
    rgb = gri_composite(g, r, i, lupton_q=lupton_q, lupton_stretch=lupton_stretch)
    # FITS row 0 is the bottom of the sky image; PNG row 0 (and the boxes) is the top.
    return np.ascontiguousarray(rgb[::-1]), int(bad.sum())


def _pillow_rgb(img, path: Path) -> np.ndarray:
    """uint8 [H, W, 3] as ``tf.io.decode_image(channels=3, dtype=tf.uint8)`` decodes a PNG."""
    if img.mode.startswith("I;16"):
        # 16-bit greyscale PNG. libpng, and so TensorFlow, keeps the high byte (v >> 8);
        # Pillow's convert("RGB") would clip every value above 255 to white.
        grey = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if img.mode in ("I", "F"):
        raise UnreadableImageError(
            f"{path.name}: {img.mode} mode (32-bit) images have no uint8 scaling; "
            "use an 8- or 16-bit PNG, a JPEG or FITS."
        )
    # 16-bit RGB(A) and grey+alpha PNGs reach here as 8-bit: Pillow keeps the high byte too.
    return np.asarray(img.convert("RGB"))


def read_image(path: str | Path, *, lupton_q: float = LUPTON_Q, lupton_stretch: float = LUPTON_STRETCH) -> Image:
    """Reads a whole cutout as RGB, with its FITS header when it is a FITS file.

    PNG/JPEG (any Pillow format): RGB, RGBA (alpha dropped), greyscale or palette, 8 or
    16 bits, exactly as ``tf.io.decode_image(channels=3, dtype=tf.uint8)`` (and so the
    SavedModel) decodes a PNG: 16-bit values keep their high byte (``v >> 8``). FITS
    (`FITS_SUFFIXES`, optionally gzipped; or a `gsfc_tf.bands` cube listing its BANDS, or a path
    of one file per band holding "{band}"): g, r, i planes taken by name when the image HDUs
    name their bands (FILTER or EXTNAME, any case and order: `gsfc_tf.bands.names_its_bands`),
    else as a (3, H, W) cube in one HDU or as the first three image HDUs; combined by `gri_composite` (i -> R, r -> G, g -> B), or a
    single 2-D plane shown grey; flipped to top row first. NaN or infinite FITS pixels are
    drawn black and counted (`Image.n_bad_pixels`); a FITS file without one finite pixel is
    unreadable.

    Args:
        path: the cutout file; its suffix (any case) tells FITS from the rest.
        lupton_q, lupton_stretch: ``Q`` and ``stretch`` of `gri_composite`, FITS only.

    Returns:
        An `Image`: uint8 [H, W, 3], a FITS header (`Image.header`) or None, the bad-pixel count.

    Raises:
        UnreadableImageError: missing or corrupt file, unsupported layout, a file naming its
            bands without one of g, r, i.
    """
    path = Path(path)
    try:
        if path.name.lower().endswith(FITS_SUFFIXES):
            return _read_fits(path, lupton_q, lupton_stretch)
        # Deferred: only the reader needs Pillow.
        from PIL import Image as PillowImage

        with PillowImage.open(path) as img:
            return Image(_pillow_rgb(img, path), None)
    except UnreadableImageError:
        raise
    except Exception as err:  # Pillow/astropy raise many types for corrupt files.
        raise UnreadableImageError(f"{path.name}: {type(err).__name__}: {err}") from err
