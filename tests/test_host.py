"""`host.host_fluxes` and `Host.half_light_radius` against photutils, their reference: one
`SourceCatalog` Kron flux per band, and `flux_radius(0.5)`."""

import math

import numpy as np
import pytest
from photutils.segmentation import SourceCatalog

from gsfc_tf.host import detection_image, host_fluxes, segment_host

_FWHM = 3.0


def _galaxy_with_neighbours(size: int, shift: int, seed: int) -> dict[str, np.ndarray]:
    """Three bands of a flat elongated disc (semi-axes 15 and 6 px, along x) `shift` px right of
    the crop's centre, with compact neighbours inside its Kron aperture (1.75 times its semi-axes):
    one at (24, -2) px whose mirror image is NaN in r, and two mirrored onto each other at
    (23, 2) and (-23, -2); noise, and NaN pixels that differ between the bands."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    x0, y0 = size // 2 + shift, size // 2

    def neighbour(dx, dy):
        return 3.0 * np.exp(-((x - x0 - dx) ** 2 + (y - y0 - dy) ** 2) / (2 * 0.8**2))

    disc = np.where(((x - x0) / 15) ** 2 + ((y - y0) / 6) ** 2 < 1, 1.0, 0.0)
    light = disc + neighbour(24, -2) + neighbour(23, 2) + neighbour(-23, -2)
    bands = {}
    for name, colour in (("g", 0.6), ("r", 1.0), ("i", 1.3)):
        image = colour * light + rng.normal(0.0, 0.1, light.shape)
        image[rng.integers(0, size, size // 2), rng.integers(0, size, size // 2)] = np.nan
        bands[name] = image
    bands["r"][y0 : y0 + 5, x0 - 27 : x0 - 21] = np.nan
    return bands


def _photutils_kron_fluxes(bands, host) -> dict[str, float]:
    """The flux photutils gives each band in the host's detection Kron aperture."""
    fluxes = {}
    for name, image in bands.items():
        catalog = SourceCatalog(image, host.segmentation, mask=~np.isfinite(image), detection_catalog=host.catalog)
        fluxes[name] = float(catalog.select_label(host.label).kron_flux)
    return fluxes


# The Kron aperture inside the crop, and past its right edge (photutils' cut clipped; the mirror
# images of the neighbours left of the host fall off it).
@pytest.mark.parametrize("size, shift", [(121, 0), (61, 8)])
def test_host_fluxes_are_photutils_kron_fluxes(size, shift):
    bands = _galaxy_with_neighbours(size, shift, seed=size)
    host = segment_host(detection_image(bands.values()), fwhm_px=_FWHM)
    assert host.found
    box = host.catalog.select_label(host.label).kron_aperture.bbox
    assert (box.ixmax > size) == (shift > 0) and box.ixmin >= 0
    # The neighbours are segments of their own, inside the aperture.
    x0, y0 = size // 2 + shift, size // 2
    neighbours = {int(host.segmentation.data[y0 + dy, x0 + dx]) for dx, dy in ((24, -2), (-23, -2)) if x0 + dx < size}
    assert host.label not in neighbours and 0 not in neighbours
    expected = _photutils_kron_fluxes(bands, host)
    measured = host_fluxes(bands, host)
    assert measured.keys() == expected.keys()
    for name in bands:
        # Measured: equal to the last bit (the same pixels summed in the same order).
        assert measured[name] == pytest.approx(expected[name], rel=1e-12, abs=0)
    # The other segments' pixels are replaced by their mirror images (or 0): their light does not count.
    others = (host.segmentation.data != host.label) & (host.segmentation.data != 0)
    brightened = host_fluxes({name: image + 100.0 * others for name, image in bands.items()}, host)
    for name in bands:
        assert brightened[name] == pytest.approx(expected[name], rel=1e-12, abs=0)


@pytest.mark.parametrize("size, shift", [(121, 0), (61, 8)])
def test_half_light_radius_is_photutils_flux_radius(size, shift):
    bands = _galaxy_with_neighbours(size, shift, seed=size)
    host = segment_host(detection_image(bands.values()), fwhm_px=_FWHM)
    expected = float(host.catalog.select_label(host.label).flux_radius(0.5).value)
    # Measured: equal to the last bit here, 4e-16 at most on 30 synthetic FITS and PNG cutouts
    # (photutils makes its Kron aperture's pixel overlap on the whole bounding box).
    assert host.half_light_radius == pytest.approx(expected, rel=1e-9, abs=0)


def test_host_fluxes_without_a_host_are_nan_and_bad_bands_raise():
    host = segment_host(np.zeros((40, 40)), fwhm_px=_FWHM)
    assert not host.found
    fluxes = host_fluxes({"g": np.zeros((40, 40)), "r": np.ones((40, 40))}, host)
    assert list(fluxes) == ["g", "r"] and all(math.isnan(flux) for flux in fluxes.values())
    with pytest.raises(ValueError, match=r"band 'r' has shape \(41, 40\), the host's mask \(40, 40\)"):
        host_fluxes({"r": np.zeros((41, 40))}, host)
