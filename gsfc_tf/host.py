"""The host galaxy of a cutout: its photutils segment, shape, size and flux per band.

Model-free (numpy, astropy, photutils, scikit-image; no TensorFlow), like `evaluation`: it takes
band images and returns numbers with units, so it serves any detector's boxes. `gsfc_tf.photometry`
uses the host to mask detections to it and to give each clump its flux ratio and galactocentric
distance.

How the host is found (`segment_host`):
    1. NaN and infinite pixels are masked (and counted). FITS cutouts are segmented on their
       bands' inverse-variance-weighted sum (`detection_image`), pictures on their luminance.
    2. The image is smoothed with a Gaussian of the PSF's FWHM. Its sky level and noise are
       those of the faintest `SKY_BOX_PX`-px box of photutils' `Background2D` mesh that is not
       flat (median and MAD standard deviation): measured on the smoothed image itself, the
       noise is right also where neighbouring pixels' noise is correlated (drizzled or JPEG
       images).
    3. Pixels above sky + `n_sigma` x noise, `n_pixels` connected at least, are sources
       (`detect_sources`). The one under `centre_xy` (default the image centre, where survey
       cutouts put their galaxy) is the host's segment. No source there is a per-galaxy flag,
       not an error, and every detection is off.
    4. Its neighbours are split off it: at 2 sigma a galaxy's faint light joins its neighbours'
       into one segment. The segment's sources above `NEIGHBOUR_N_SIGMA` (3) sigma are its
       cores: the one under the centre is the host's, each other one covering
       `NEIGHBOUR_MIN_BEAMS` (10) PSF beams of the smoothed image or more a neighbour's, a whole
       galaxy. The compact ones (clumps, single PSF knots, or small galaxies) and the fainter
       pixels go with the core their light joins at the highest level (watershed, as
       `deblend_sources` assigns pixels); the neighbours' get labels of their own in
       `Host.segmentation`. The rest is the host, `Host.mask`: a detection off it is off the
       host.
    5. Its centroid, shape and half-light radius come from photutils' `SourceCatalog`; its flux
       in each band (`host_fluxes`) is the Kron flux in the detection image's Kron aperture,
       other sources' pixels there replaced by their mirror images. The Kron aperture's exact
       pixel overlap is made once (`Host.kron_aperture`) and serves the half-light radius and
       every band: photutils' `flux_radius` and `kron_flux` make it again each time, over the
       aperture's whole bounding box (9-15 ms each at 200 px); the tests compare the values.

Why not photutils' deblending (`deblend_sources`): its contrast criterion weighs a peak's
watershed share of the segment, and a clump's share takes in the disc around it. On the host's
segment alone (8 exponential levels, 13 ms per galaxy), contrast 0.08 (clumps hold < 8 % of
the host's light) put 0.156 of the true clumps off on FITS, 0.154 on pictures; 0.25 put 0.036
and 0.025 off and still kept 53 of the deep field's 194 neighbour detections (below) on; 0.4
kept 60. Thresholding again at 6 and 12 sigma, as deblending does, finds clumps on the bright
inner disc as extended as neighbours (0.067 off on FITS with 5-beam neighbours). The old rule
deblended the whole image (peaks with 30 % of the light, 0.65 s per galaxy), which moved
neither the host's Kron flux nor its centroid.

Band images are taken as sky-subtracted, as SDSS frames are (`host_fluxes` measures them as they
are); the detection image's sky is estimated all the same, for pictures and for the residual
pedestal a sky subtraction leaves.

The on-host rule, measured (`python -m benchmarks.bench_science`, 2026-12-06) on synthetic
galaxies with the truth (`synthetic.generate_bands`, 150 galaxies of seed 77, 358 clumps, 200 px,
clump_scout/synthetic 2.0.0's training family) and on the Hubble deep field's 200-px crops
(`gsfc_tf.realimages`: detections of a `make demo` export at its threshold 0.57, sorted by the
5-sigma source they fall on, `realimages.segment_sources`). Share of the true clumps off the
host; deep-field detections on the host that lie on another source than the crop's central
galaxy (20 galaxy crops: 194 such detections, 279 more on no source; 4 background crops: 43
and 58):

    rule                                                  FITS off  PNG off  HDF others on-host
    before: deblended, 1 sigma of the pixel noise, sky 0   0.095    0.254    34/151, 31/40 (an
      (FITS) or the crop's clipped median (PNG); no host:                      earlier export at
      every detection kept                                                     0.64)
    n_sigma 3.0 of the smoothed image's noise              0.036    0.025    38/194, 5/43
    n_sigma 2.5, neighbours not split                      0.034    0.020    49/194, 7/43
    n_sigma 2.0, neighbours not split                      0.020    0.011    64/194, 9/43
      the same, FITS on the plain band sum                 0.034
    n_sigma 2.5, neighbours split                          0.034    0.020    39/194, 5/43
    n_sigma 2.0, neighbours split (default)                0.020    0.011    43/194, 5/43
      neighbours from 5 beams                              0.028    0.014    40/194, 5/43
      from 3.5 sigma cores                                 0.020    0.011    43/194, 3/43
      compact cores marking the host                       0.020    0.011    46/194, 6/43

At the default the host also keeps 22 of the galaxy crops' 279 detections on no source (47
unsplit) and 1 of the background crops' 58 (7). Splitting neighbours changed the segment of 7 of
the 150 synthetic galaxies, and neither their Kron flux nor their centroid (r-band Kron flux over
the truth 0.99 median either way, 10-90 % 0.95-1.13). The split takes 1.0 ms per synthetic
picture and 2.5 ms per deep-field crop (mean; `segment_host` about 30 and 22 ms in all). The
neighbour detections still on the host (48, both kinds of crop) lie on galaxies joined to the
central one above 3 sigma (43) or on compact ones: as a 3-sigma source of their own they cover
3-10 beams, as the brightest clumps in the outer disc do (at 5 beams 9 more of 782 true clumps,
FITS and pictures of seeds 77 and 2026, go off with them). The clumps still off lie in the
generator's outer disc, 4-6 scale lengths out, where none of the disc's light rises above the
noise: only distance could put them on, and no ellipse or multiple of the half-light radius that
keeps them (up to 5.4 half-light radii out on FITS) leaves the deep field's neighbours (1-6
half-light radii out) off. The old rule lost clumps to the PNG sky, raised 5-50 counts by the
galaxy filling the crop (the faintest box gives 4), and to its higher isophote. Across n_sigma
2-3 the host's r-band Kron flux over the truth is 0.99 (median; 10-90 % 0.94-1.12), its centroid
0.8 px from the truth (median).

Pixel frame: (x, y) are the 0-based pixel coordinates of the arrays as given (photutils' and
astropy's: the centre of array element [0, 0] is (0, 0)); for FITS cutouts use the stored arrays
and `conventions.image_to_fits_pixels` for boxes. Angles are counter-clockwise from +x.

Shape shorthand: H x W image.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterable, Mapping

import numpy as np
from astropy import units as u
from astropy.convolution import convolve
from astropy.stats import mad_std
from astropy.table import Table
from photutils.aperture import CircularAperture
from photutils.background import Background2D, MADStdBackgroundRMS, MedianBackground
from photutils.geometry import circular_overlap_grid, elliptical_overlap_grid
from photutils.segmentation import (
    SegmentationImage,
    SourceCatalog,
    detect_sources,
    make_2dgaussian_kernel,
)
from photutils.utils import NoDetectionsWarning
from scipy.optimize import root_scalar
from skimage.segmentation import watershed

__all__ = [
    "HOST_FLAGS",
    "NEIGHBOUR_MIN_BEAMS",
    "NEIGHBOUR_N_SIGMA",
    "N_SIGMA",
    "SKY_BOX_PX",
    "Host",
    "detection_image",
    "host_fluxes",
    "pixel_noise",
    "segment_host",
]

# Why a galaxy has no host measurement: "" (found), no segment at the centre, nothing to measure.
HOST_FLAGS = ("", "no_segment_at_centre", "no_valid_pixels")
# The host's segment: pixels of the PSF-smoothed detection image this many of its noise sigmas
# above the sky (module docstring: 0.020 of the true clumps off on FITS, 0.011 on pictures).
N_SIGMA = 2.0
# The host's neighbours (module docstring): sources this many noise sigmas above the sky inside
# the host's segment, other than the one under the centre, covering at least this many PSF beams
# of the smoothed image. A clump is one PSF knot: measured, the 16 true clumps (of 782, FITS and
# pictures) on a 3-sigma source of their own cover 1.2-9.9 beams (median 4.5), the deep field's
# neighbours under a detection 3.4-119 (median 14); at 5 beams 9 more clumps went off.
NEIGHBOUR_N_SIGMA = 3.0
NEIGHBOUR_MIN_BEAMS = 10.0
# Side of the boxes whose faintest gives the sky and noise: 64 boxes in a 200-px crop, each with
# about 20 independent PSF-smoothed samples.
SKY_BOX_PX = 25


@dataclasses.dataclass(frozen=True)
class Host:
    """The host galaxy's segment and properties; NaN properties when `flag` is set.

    Attributes:
        flag: one of `HOST_FLAGS`; "" when the host was found.
        mask: bool [H, W], True on the host's segment: a detection off it is off the host. All
            False when not found.
        segmentation: the sources of the detection image, the host's neighbours split off its
            segment with labels of their own (None if nothing was found).
        catalog: photutils' `SourceCatalog` of `segmentation` on the detection image (None
            when the host was not found).
        label: the host's segment in `segmentation` (0 when not found).
        background: the PSF-smoothed detection image's sky level per pixel.
        noise: its noise per pixel.
        n_invalid: NaN or infinite pixels, masked throughout.
        x, y: the host's centroid, px.
        semi_major_axis: RMS extent of its light along the major axis (photutils'
            `semimajor_axis`, the 1-sigma semi-major axis), px.
        axis_ratio: minor over major RMS extent.
        position_angle: the major axis' angle, deg counter-clockwise from +x, in [0, 180).
        half_light_radius: radius of the circle holding half its Kron flux, px (photutils'
            `flux_radius(0.5)`).
        area: its segment's area, px^2.
        kron_aperture: its Kron aperture in `catalog` on the image, which measures it in every
            band (`host_fluxes`); None when not found.
    """

    flag: str
    mask: np.ndarray
    segmentation: SegmentationImage | None
    catalog: SourceCatalog | None
    label: int
    background: float
    noise: float
    n_invalid: int
    x: float = math.nan
    y: float = math.nan
    semi_major_axis: float = math.nan
    axis_ratio: float = math.nan
    position_angle: float = math.nan
    half_light_radius: float = math.nan
    area: float = math.nan
    kron_aperture: _KronAperture | None = dataclasses.field(default=None, repr=False)

    @property
    def found(self) -> bool:
        return not self.flag

    def contains(self, x, y) -> np.ndarray:
        """bool [...]: whether the pixels holding (x, y) ([...] each, px) lie on the host's segment."""
        x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
        height, width = self.mask.shape
        column, row = np.round(x).astype(np.int64), np.round(y).astype(np.int64)
        inside = (column >= 0) & (column < width) & (row >= 0) & (row < height)
        result = np.zeros(x.shape, bool)
        result[inside] = self.mask[row[inside], column[inside]]
        return result

    def table(self) -> Table:
        """One row: the host's flag, centroid, shape, size and area, with units."""
        row = Table()
        row["host_flag"] = [self.flag]
        row["host_x"] = [self.x] * u.pix
        row["host_y"] = [self.y] * u.pix
        row["host_semi_major_axis"] = [self.semi_major_axis] * u.pix
        row["host_axis_ratio"] = [self.axis_ratio]
        row["host_position_angle"] = [self.position_angle] * u.deg
        row["host_half_light_radius"] = [self.half_light_radius] * u.pix
        row["host_area"] = [self.area] * u.pix**2
        row["host_n_invalid"] = [self.n_invalid]
        return row


def _check_image(name: str, image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2 or min(image.shape) < 1 or not np.issubdtype(image.dtype, np.number):
        raise ValueError(f"{name} must be a 2-D numeric image, got shape {image.shape} and dtype {image.dtype}")
    return image.astype(np.float64)


def pixel_noise(image) -> float:
    """The noise per pixel of an [H, W] image (NaN and infinite pixels left out).

    Neighbouring pixels' differences cancel the galaxy's smooth light, which fills a crop too
    much for the pixels' own scatter to measure the noise: their robust (MAD) scatter is
    sqrt(2) times the noise's.
    """
    differences = np.diff(np.asarray(image, np.float64), axis=1)
    return float(mad_std(differences[np.isfinite(differences)])) / math.sqrt(2)


def detection_image(bands: Iterable[np.ndarray]) -> np.ndarray:
    """float64 [H, W]: the bands' sum weighted by their inverse noise variance, to find the host on.

    The weights (1 / noise^2 per pixel, over their mean, so the sum keeps the bands' unit) give
    the best signal-to-noise for a source of flat spectrum: SDSS's noisy u and z add their light
    without drowning the faint outer disc in g, r and i (measured in the module docstring).
    Bands without measurable noise (flat images) are summed as they are.

    Args:
        bands: B >= 1 images [H, W] of one shape, in one flux unit.

    Raises:
        ValueError: no band, or bands that are not 2-D numeric images of one shape.
    """
    images = [_check_image("band", band) for band in bands]
    if not images or any(image.shape != images[0].shape for image in images):
        raise ValueError(f"bands must be one or more images of one shape, got shapes {[i.shape for i in images]}")
    variances = np.array([pixel_noise(image) ** 2 for image in images])
    weights = 1 / variances if np.all(variances > 0) else np.ones(len(images))
    return np.tensordot(weights / weights.mean(), np.stack(images), axes=1)


def _sky_and_noise(smoothed: np.ndarray, invalid: np.ndarray) -> tuple[float, float]:
    """The median and MAD standard deviation of the faintest `SKY_BOX_PX` box of `smoothed` that
    has noise: flat boxes (a cutout's zero padding) are not sky. (median, 0) for a flat image.
    Pixels the smoothing could not fill (NaN holes wider than its kernel) are left out, and boxes
    more than half made of them."""
    mesh = Background2D(
        smoothed, min(SKY_BOX_PX, *smoothed.shape), filter_size=1, exclude_percentile=50.0,
        bkg_estimator=MedianBackground(), bkg_rms_estimator=MADStdBackgroundRMS(),
    )
    noisy = mesh.background_rms_mesh > 0
    if not noisy.any():
        return float(np.median(smoothed[~invalid])), 0.0
    faintest = np.argmin(np.where(noisy, mesh.background_mesh, np.inf))
    return float(mesh.background_mesh.flat[faintest]), float(mesh.background_rms_mesh.flat[faintest])


def _split_off_neighbours(
    smoothed: np.ndarray,
    sources: SegmentationImage,
    label: int,
    centre_row_column: tuple[int, int],
    *,
    threshold: float,
    min_area_px: float,
    n_pixels: int,
) -> SegmentationImage:
    """`sources` with the host's neighbours split off its segment `label` (module docstring).

    The segment's sources above `threshold` are its cores: the one under the centre marks the
    host, each other one of at least `min_area_px` pixels a neighbour. Every other pixel of the
    segment, the compact cores' (clumps) too, goes to the marked core its light joins at the
    highest level (watershed on the smoothed image, as photutils' `deblend_sources` assigns
    pixels); a neighbour's pixels get a new label, the host keeps `label`.
    """
    segment = sources.data == label
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        cores = detect_sources(smoothed, threshold, n_pixels, mask=~segment)
    central = 0 if cores is None else cores.data[centre_row_column]
    if central == 0:
        return sources
    neighbours = cores.labels[(cores.areas >= min_area_px) & (cores.labels != central)]
    if not neighbours.size:
        return sources
    markers = np.where(np.isin(cores.data, neighbours) | (cores.data == central), cores.data, 0)
    # Light climbs to the markers on the negated image; the NaN holes left by the smoothing lie
    # outside the segment (detect_sources masked them).
    owners = watershed(np.where(segment, -smoothed, 0.0), markers, mask=segment)
    split = segment & (owners != central)
    data = sources.data.copy()
    data[split] = sources.max_label + owners[split]
    return SegmentationImage(data)


def segment_host(
    detection_image,
    *,
    fwhm_px: float,
    centre_xy: tuple[float, float] | None = None,
    n_sigma: float = N_SIGMA,
    n_pixels: int = 10,
    background: float | None = None,
    neighbour_n_sigma: float | None = NEIGHBOUR_N_SIGMA,
) -> Host:
    """Finds the host galaxy under `centre_xy` (module docstring).

    Args:
        detection_image: [H, W] image to segment (`detection_image` of the bands, or a
            picture's luminance); NaN and infinite pixels are masked.
        fwhm_px: the PSF's FWHM, px (> 0): the smoothing kernel's.
        centre_xy: (x, y) of the galaxy, px; default the image centre ((W - 1) / 2, (H - 1) / 2).
        n_sigma: the sources' threshold above the sky, in the smoothed image's noise sigmas.
        n_pixels: fewest connected pixels of a source.
        background: the detection image's sky level per pixel; None (default) to measure it
            (the faintest box's median).
        neighbour_n_sigma: the threshold, in the same noise sigmas, of the sources inside the
            host's segment that tell its neighbours from its clumps (`NEIGHBOUR_MIN_BEAMS`);
            None to leave the segment whole.

    Returns:
        A `Host`; its `flag` says why there is none.

    Raises:
        ValueError: the image is not 2-D numeric or `fwhm_px` is not positive.
    """
    image = _check_image("detection_image", detection_image)
    if not fwhm_px > 0:
        raise ValueError(f"fwhm_px must be > 0, got {fwhm_px!r}")
    height, width = image.shape
    if centre_xy is None:
        centre_xy = ((width - 1) / 2, (height - 1) / 2)
    invalid = ~np.isfinite(image)
    n_invalid = int(invalid.sum())
    empty = np.zeros(image.shape, bool)
    if n_invalid == image.size:
        return Host("no_valid_pixels", empty, None, None, 0, math.nan, math.nan, n_invalid)

    kernel = make_2dgaussian_kernel(fwhm_px, size=2 * math.ceil(1.5 * fwhm_px) + 1)
    with warnings.catch_warnings():
        # NaN holes wider than the kernel stay NaN and are left out: `n_invalid` counts them.
        warnings.filterwarnings("ignore", message=".*NaN values detected post convolution")
        warnings.filterwarnings("ignore", message="Input data contains non-finite")
        # astropy's convolve fills masked pixels from their neighbours rather than spreading NaN.
        smoothed = convolve(np.where(invalid, np.nan, image), kernel, nan_treatment="interpolate")
        sky, noise = _sky_and_noise(smoothed, invalid)
    if background is not None:
        sky = float(background)
    with warnings.catch_warnings():
        # Nothing detected is the "no_segment_at_centre" flag, not a warning.
        warnings.simplefilter("ignore", NoDetectionsWarning)
        sources = detect_sources(smoothed, sky + n_sigma * noise, n_pixels, mask=invalid)
    host = Host("no_segment_at_centre", empty, None, None, 0, sky, noise, n_invalid)
    column, row = (int(round(v)) for v in centre_xy)
    if sources is None or not (0 <= row < height and 0 <= column < width) or sources.data[row, column] == 0:
        return host
    label = int(sources.data[row, column])
    if neighbour_n_sigma is not None:
        # The smoothed image's PSF has the kernel's FWHM times sqrt(2): a point source's effective
        # area (2 pi sigma^2) on it is pi FWHM^2 / (2 ln 2).
        beam_px = math.pi * fwhm_px**2 / (2 * math.log(2))
        sources = _split_off_neighbours(
            smoothed, sources, label, (row, column), threshold=sky + neighbour_n_sigma * noise,
            min_area_px=NEIGHBOUR_MIN_BEAMS * beam_px, n_pixels=n_pixels,
        )
    catalog = SourceCatalog(image - sky, sources, convolved_data=smoothed - sky, mask=invalid)
    source = catalog.select_label(label)
    kron_aperture = _KronAperture.of_source(source, sources, label)
    return dataclasses.replace(
        host,
        flag="",
        mask=sources.data == label,
        segmentation=sources,
        catalog=catalog,
        label=label,
        x=float(source.x_centroid),
        y=float(source.y_centroid),
        semi_major_axis=float(source.semimajor_axis.value),
        axis_ratio=float(source.semiminor_axis.value / source.semimajor_axis.value),
        # An ellipse's axis is the same at theta and theta + 180: one value in [0, 180).
        position_angle=float(source.orientation.to_value(u.deg)) % 180.0,
        half_light_radius=_half_light_radius(image - sky, source, sources, label, kron_aperture),
        area=float(source.area.value),
        kron_aperture=kron_aperture,
    )


def host_fluxes(bands: Mapping[str, np.ndarray], host: Host) -> dict[str, float]:
    """The host's flux in each band: its Kron flux in the detection image's Kron aperture.

    Other segments' pixels in the aperture are replaced by their mirror images about the host's
    centre (photutils' 'correct' method); NaN pixels are left out. NaN in every band when the
    host was not found.

    The value is photutils' `SourceCatalog(band, host.segmentation, mask=NaN pixels,
    detection_catalog=host.catalog).kron_flux` (the tests compare the two), from the aperture's
    pixel overlap and mirror geometry that `segment_host` made once (`Host.kron_aperture`):
    photutils makes them again for every band, over the aperture's whole bounding box, which
    a host filling the crop overfills (9-13 ms a band at 200 px).

    Args:
        bands: band name -> [H, W] sky-subtracted image in flux per pixel, the frame of `host`.
        host: from `segment_host` on these bands' detection image.

    Returns:
        band name -> flux, in the images' units.
    """
    images = {}
    for name, image in bands.items():
        image = _check_image(f"band {name!r}", image)
        if image.shape != host.mask.shape:
            raise ValueError(f"band {name!r} has shape {image.shape}, the host's mask {host.mask.shape}")
        images[name] = image
    if not host.found:
        return {name: math.nan for name in images}
    return {name: host.kron_aperture.flux(image) for name, image in images.items()}


@dataclasses.dataclass(frozen=True)
class _MirroredCut:
    """A box of the image whose pixels on other segments than the host's take, as photutils'
    'correct' method has them (`segmentation.utils._mask_to_mirrored_value`), the value of the
    pixel mirrored about the box's pixel `int(centre + 0.5)`; 0 where that pixel is outside the
    box, on another segment, or NaN.

    Attributes:
        box: the image's (rows, columns) slices.
        neighbour_yx: ([N], [N]) the box's pixels on other segments that are replaced.
        mirror_yx: ([N], [N]) their mirror pixels, -1 where the mirror gives 0 whatever the band.
    """

    box: tuple[slice, slice]
    neighbour_yx: tuple[np.ndarray, np.ndarray]
    mirror_yx: tuple[np.ndarray, np.ndarray]

    @classmethod
    def of(cls, segmentation: SegmentationImage, label: int, box: tuple[slice, slice], centre_xy, replaced=None):
        """`replaced`: bool [h, w] pixels of the box that matter (default all)."""
        segments = segmentation.data[box]
        others = (segments != label) & (segments != 0)
        rows, columns = np.nonzero(others if replaced is None else others & replaced)
        mirror_rows = 2 * int(centre_xy[1] - box[0].start + 0.5) - rows
        mirror_columns = 2 * int(centre_xy[0] - box[1].start + 0.5) - columns
        height, width = segments.shape
        in_box = (0 <= mirror_rows) & (mirror_rows < height) & (0 <= mirror_columns) & (mirror_columns < width)
        usable = in_box.copy()
        usable[in_box] = ~others[mirror_rows[in_box], mirror_columns[in_box]]
        return cls(box, (rows, columns), (np.where(usable, mirror_rows, -1), np.where(usable, mirror_columns, -1)))

    def values(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(float64 [h, w]: the box of an [H, W] image, neighbours' pixels replaced; bool [h, w]: its NaN pixels)."""
        data = image[self.box]
        invalid = ~np.isfinite(data)
        corrected = data.copy()
        mirror_rows, mirror_columns = self.mirror_yx
        unusable = (mirror_rows < 0) | invalid[mirror_rows, mirror_columns]
        corrected[self.neighbour_yx] = np.where(unusable, 0.0, data[mirror_rows, mirror_columns])
        return corrected, invalid


def _clipped_box(x_range: tuple[int, int], y_range: tuple[int, int], shape) -> tuple[slice, slice] | None:
    """The (rows, columns) slices of the part of a pixel box in an image of `shape`; None if none is,
    or if the box is larger than photutils measures in (the image or a million pixels: NaN)."""
    if (x_range[1] - x_range[0]) * (y_range[1] - y_range[0]) > max(shape[0] * shape[1], 1_000_000):
        return None
    x_min, x_max = max(x_range[0], 0), min(x_range[1], shape[1])
    y_min, y_max = max(y_range[0], 0), min(y_range[1], shape[0])
    return (slice(y_min, y_max), slice(x_min, x_max)) if x_min < x_max and y_min < y_max else None


@dataclasses.dataclass(frozen=True)
class _KronAperture:
    """The host's Kron aperture on the image, as photutils' Kron photometry applies it to a band.

    photutils 3.0 (`SourceCatalog._calc_kron_photometry`) cuts the band to the aperture's
    bounding box, replaces the other segments' pixels there (`_MirroredCut`), and sums weight x
    value over the pixels the aperture overlaps that are not NaN; here the overlap is made on the
    part of the box in the image only (photutils makes it on the whole box).

    Attributes:
        pixels: the box (None when photutils has no aperture or it is off the image: NaN flux).
        weights: float64 [h, w] the exact share of each pixel of the box inside the aperture.
    """

    pixels: _MirroredCut | None
    weights: np.ndarray | None = None

    @classmethod
    def of_source(cls, source: SourceCatalog, segmentation: SegmentationImage, label: int) -> _KronAperture:
        """The aperture of `source`, the host's row of the detection image's catalogue."""
        aperture = source.kron_aperture
        if aperture is None:
            return cls(None)
        x, y = aperture.positions
        if isinstance(aperture, CircularAperture):
            x_extent = y_extent = aperture.r
        else:
            theta = u.Quantity(aperture.theta, u.rad).to_value(u.rad)
            a_cos, a_sin = aperture.a * math.cos(theta), aperture.a * math.sin(theta)
            b_cos, b_sin = aperture.b * math.cos(theta), aperture.b * math.sin(theta)
            x_extent, y_extent = math.hypot(a_cos, b_sin), math.hypot(a_sin, b_cos)
        # The bounding box as photutils 3.0's Kron photometry rounds it.
        box = _clipped_box(
            (math.floor(x - x_extent + 0.5), math.floor(x + x_extent + 1.5)),
            (math.floor(y - y_extent + 0.5), math.floor(y + y_extent + 1.5)),
            segmentation.shape,
        )
        if box is None:
            return cls(None)
        rows, columns = box
        edges = (columns.start - 0.5 - x, columns.stop - 0.5 - x, rows.start - 0.5 - y, rows.stop - 0.5 - y,
                 columns.stop - columns.start, rows.stop - rows.start)
        if isinstance(aperture, CircularAperture):
            weights = circular_overlap_grid(*edges, aperture.r, 1, 1)
        else:
            weights = elliptical_overlap_grid(*edges, aperture.a, aperture.b, theta, 1, 1)
        return cls(_MirroredCut.of(segmentation, label, box, (x, y), replaced=weights > 0), weights)

    def flux(self, image: np.ndarray) -> float:
        """The Kron flux of a float64 [H, W] band (NaN pixels left out; NaN when none is left)."""
        if self.pixels is None:
            return math.nan
        corrected, invalid = self.pixels.values(image)
        # photutils' sum, term for term: the same pixels in the same order.
        values = (self.weights * corrected)[(self.weights > 0) & ~invalid]
        return float(np.sum(values)) if values.size else math.nan


def _half_light_radius(
    data: np.ndarray, source: SourceCatalog, segmentation: SegmentationImage, label: int, kron_aperture: _KronAperture
) -> float:
    """photutils' `source.flux_radius(0.5)` (3.0), px, from the Kron flux in `kron_aperture`.

    photutils computes that Kron flux again, and with it the aperture's pixel overlap over its
    whole bounding box: 12-15 ms of a 200-px crop's 35 (tests compare the radii). As there,
    the radius is the circle's (about the centroid) holding half the Kron flux of `data` (the
    sky-subtracted detection image, NaN pixels 0, other segments mirrored within the circle of
    the maximum radius `source.kron_radius` x `kron_params[0]` x `semimajor_axis`), found by
    Brent's method between 0.1 px and that radius, narrowed by tenths of it until the root is
    bracketed; NaN when none is.
    """
    kron_flux = kron_aperture.flux(data)
    x, y = float(source.x_centroid), float(source.y_centroid)
    max_radius = float(source.semimajor_axis.value * source.kron_radius.value) * source.kron_params[0]
    if not np.all(np.isfinite((x, y, kron_flux, max_radius))) or kron_flux == 0:
        return math.nan
    box = _clipped_box(
        (math.floor(x - max_radius + 0.5), math.ceil(x + max_radius + 0.5)),
        (math.floor(y - max_radius + 0.5), math.ceil(y + max_radius + 0.5)),
        data.shape,
    )
    if box is None:
        return math.nan
    clean, invalid = _MirroredCut.of(segmentation, label, box, (x, y)).values(data)
    clean[invalid] = 0.0
    height, width = clean.shape
    x_box, y_box = x - box[1].start, y - box[0].start
    edges = (-0.5 - x_box, width - 0.5 - x_box, -0.5 - y_box, height - 0.5 - y_box, width, height)

    def flux_short_of_half(radius):
        return 1.0 - np.sum(clean * circular_overlap_grid(*edges, radius, 1, 1)) / (0.5 * kron_flux)

    min_radius, step = 0.1, 0.1 * max_radius
    while max_radius > min_radius:
        try:
            return float(root_scalar(flux_short_of_half, bracket=[min_radius, max_radius], method="brentq").root)
        except ValueError:  # not bracketed
            max_radius -= step
    return math.nan
