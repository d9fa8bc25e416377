"""Tests for the synthetic galaxies' u, g, r, i, z light, their FITS cutouts and truth table."""

import dataclasses
import hashlib

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from gsfc_tf import conventions
from gsfc_tf.catalogue import pixel_to_world
from gsfc_tf.images import LUPTON_Q, LUPTON_STRETCH, read_image
from tfds_clumpscout.clump_scout import synthetic
from tfds_clumpscout.clump_scout.synthetic_fits import (
    FITS_BAND_ORDER,
    NANOMAGGIES_PER_UNIT,
    ZERO_POINT,
    read_bands,
    write_synthetic_fits,
)

# sha256 (first 16 hex digits) of every field of `generate_galaxy(seed, image_size=size)`: they pin
# the generator, and so the clump_scout synthetic data, against unintended changes. Taken from the
# render family's generator (clump_scout/synthetic 2.0.0, #28), which draws a renderer per galaxy
# and so changed every galaxy; u and z still add no draw to the gri light.
_DIGESTS = {
    (0, 200): "37e34cc0ec256416",
    (7, 200): "43f45192ca4c0812",
    (2024, 200): "618ca4adf053d462",
    (5, 64): "93fc9ab89894cde5",
    (11, 320): "5e0be3cbc7b627ee",
}
_DIGESTS_OF_GENERATE_GALAXIES_3_SEED_42 = ["832e3305365c7bef", "4bf48567e6019546", "5bd4a309beba00c0"]


def _digest(galaxy: synthetic.SyntheticGalaxy) -> str:
    h = hashlib.sha256()
    for array in (
        galaxy.image,
        galaxy.boxes_yxyx,
        galaxy.labels,
        galaxy.distractors_yx,
        galaxy.hii_regions_yx,
        galaxy.snr,
        galaxy.contrast,
    ):
        h.update(np.ascontiguousarray(array).tobytes())
    h.update(repr((galaxy.ra, galaxy.dec, galaxy.redshift, galaxy.choices)).encode())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("seed, size", sorted(_DIGESTS))
def test_generate_galaxy_is_unchanged(seed, size):
    assert _digest(synthetic.generate_galaxy(seed, image_size=size)) == _DIGESTS[seed, size]


def test_generate_galaxies_and_bands_are_unchanged():
    assert [_digest(g) for g in synthetic.generate_galaxies(3, seed=42)] == _DIGESTS_OF_GENERATE_GALAXIES_3_SEED_42
    assert [_digest(b.galaxy) for b in synthetic.generate_bands(3, seed=42)] == _DIGESTS_OF_GENERATE_GALAXIES_3_SEED_42


def test_bands_contract_and_truth():
    for bands in synthetic.generate_bands(4, seed=3, image_size=96):
        n = len(bands.galaxy.labels)
        assert bands.images.shape == (5, 96, 96) and bands.images.dtype == np.float32
        assert bands.clump_flux.shape == (n, 5) and bands.clump_sigma.shape == (n, 2)
        assert np.all(bands.clump_flux > 0) and np.all(bands.host_flux > bands.clump_flux.sum(axis=0))
        np.testing.assert_array_equal(bands.clump_yx, conventions.box_centres_xy(bands.galaxy.boxes_yxyx)[:, ::-1])
        # Young clumps are blue and odd ones red: u over r follows the label.
        u_over_r = bands.clump_flux[:, 0] / bands.clump_flux[:, 2]
        assert np.all(np.where(bands.galaxy.labels == 0, u_over_r > 0.25, u_over_r < 0.15))
        assert bands.psf_fwhm == bands.galaxy.choices.psf_fwhm
        low, high = synthetic.TRAINING_FAMILY.psf_fwhm
        assert low * 96 / 200 <= bands.psf_fwhm <= high * 96 / 200


def test_u_and_z_noise_has_the_sky_sigma():
    # Far from the galaxy (a corner), u and z are sky noise of their own sigma.
    bands = next(synthetic.generate_bands(1, seed=9))
    for k in (0, 4):
        corner = bands.images[k, :40, :40]
        assert abs(corner.std() / bands.sky_sigma[k] - 1) < 0.15


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return write_synthetic_fits(tmp_path_factory.mktemp("fits"), 3, seed=5, image_size=96)


# The training family with the composite's stretch and Q fixed at `read_image`'s defaults.
_DEFAULT_COMPOSITE = dataclasses.replace(
    synthetic.TRAINING_FAMILY, name="default_composite", lupton_stretch=(LUPTON_STRETCH,) * 2, lupton_q=(LUPTON_Q,) * 2
)


def test_fits_layout(written):
    paths, truth_path = written
    assert [p.name for p in paths] == ["galaxy_00000.fits", "galaxy_00001.fits", "galaxy_00002.fits"]
    with fits.open(paths[0]) as hdul:
        assert hdul[0].data is None and hdul[0].header["OBJECT"] == "galaxy_00000"
        band_hdus, psf_hdus = hdul[1 : 1 + len(FITS_BAND_ORDER)], hdul[1 + len(FITS_BAND_ORDER) :]
        assert [h.header["FILTER"] for h in band_hdus] == list(FITS_BAND_ORDER)
        assert all(h.header["MAGZP"] == ZERO_POINT and h.header["BUNIT"] == "nanomaggy" for h in band_hdus)
        assert [h.name for h in psf_hdus] == [f"PSF_{band.upper()}" for band in FITS_BAND_ORDER]


def test_fits_planes_are_the_generator_light(written):
    paths, _ = written
    for path, bands in zip(paths, synthetic.generate_bands(3, seed=5, image_size=96)):
        read = read_bands(path)
        for k, band in enumerate(synthetic.BAND_NAMES):
            expected = bands.images[k][::-1] * np.float32(NANOMAGGIES_PER_UNIT)
            np.testing.assert_array_equal(read.images[band], expected)
            assert read.psf_fwhm_px[band] == pytest.approx(bands.psf_fwhm)
            # The PSF image: the galaxy's PSF as its sources are drawn, of that FWHM.
            np.testing.assert_allclose(read.psf_images[band], synthetic.psf_image(bands.galaxy.choices) / synthetic.psf_image(bands.galaxy.choices).sum(), rtol=1e-6)
        # The reader flips the rows back to the boxes' frame and maps the nanomaggies with the
        # generator's composite, given the stretch and Q the galaxy drew: exactly its picture.
        choices = bands.galaxy.choices
        rgb = read_image(path, lupton_q=choices.lupton_q, lupton_stretch=choices.lupton_stretch).rgb
        np.testing.assert_array_equal(rgb, bands.galaxy.image)


def test_read_image_defaults_give_the_picture_of_galaxies_drawn_with_them(tmp_path):
    paths, truth_path = write_synthetic_fits(tmp_path, 2, seed=5, image_size=96, family=_DEFAULT_COMPOSITE)
    assert set(Table.read(truth_path)["lupton_q"]) == {LUPTON_Q}
    for path, bands in zip(paths, synthetic.generate_bands(2, seed=5, image_size=96, family=_DEFAULT_COMPOSITE)):
        np.testing.assert_array_equal(read_image(path).rgb, bands.galaxy.image)


def test_truth_table(written):
    paths, truth_path = written
    truth = Table.read(truth_path)
    bands = list(synthetic.generate_bands(3, seed=5, image_size=96))
    assert len(truth) == sum(len(b.galaxy.labels) for b in bands)
    assert truth["flux_r"].unit == "nmgy" and truth["x"].unit == "pix"
    first = truth[truth["galaxy_id"] == "galaxy_00000"]
    np.testing.assert_allclose(first["flux_u"], bands[0].clump_flux[:, 0] * NANOMAGGIES_PER_UNIT)
    choices = bands[0].galaxy.choices
    assert set(first["psf_shape"]) == {choices.psf_shape} and set(first["lupton_q"]) == {choices.lupton_q}
    assert truth.meta["family"] == "training"
    np.testing.assert_allclose(first["flux_ratio_g"], first["flux_g"] / first["host_flux_g"])
    back = conventions.fits_pixels_to_image(first["x_fits"], first["y_fits"], height=96)
    np.testing.assert_allclose(back, (first["x"], first["y"]), atol=1e-9)
    # Sky positions agree with the catalogue's image-to-sky mapping of the same pixels.
    ra, dec = pixel_to_world(read_bands(paths[0]).wcs, first["x"], first["y"], image_height=96)
    np.testing.assert_allclose(first["ra"], ra, atol=1e-9)
    np.testing.assert_allclose(first["dec"], dec, atol=1e-9)
    # The generator's clump centre is where its light peaks in the stored (bottom-first) array.
    image_r = read_bands(paths[0]).images["r"]
    brightest = int(np.argmax(first["flux_r"]))
    row, column = round(float(first["y_fits"][brightest])), round(float(first["x_fits"][brightest]))
    window = image_r[row - 1 : row + 2, column - 1 : column + 2]
    assert window.max() > np.median(image_r) + 3 * 0.026


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        write_synthetic_fits(tmp_path, 0, seed=1)


def test_synthetic_fits_command_writes_a_survey_with_its_truth_and_refuses_to_overwrite(tmp_path, capsys):
    from gsfc_tf import cli

    out = tmp_path / "survey"
    assert cli.main(["synthetic-fits", "--out", str(out), "--n", "3", "--seed", "5"]) == 0
    assert sorted(path.name for path in out.iterdir()) == [
        "galaxy_00000.fits", "galaxy_00001.fits", "galaxy_00002.fits", "truth.ecsv"
    ]
    truth = Table.read(out / "truth.ecsv")
    assert set(truth["galaxy_id"]) <= {"galaxy_00000", "galaxy_00001", "galaxy_00002"} and len(truth) >= 3
    assert cli.main(["synthetic-fits", "--out", str(out), "--n", "1"]) == 2
    assert "already holds galaxy_00000.fits and more; pass --overwrite" in capsys.readouterr().err
    # Fewer galaxies with --overwrite: no file of the earlier call stays beside the new truth.
    assert cli.main(["synthetic-fits", "--out", str(out), "--n", "1", "--overwrite"]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["galaxy_00000.fits", "truth.ecsv"]
    assert set(Table.read(out / "truth.ecsv")["galaxy_id"]) == {"galaxy_00000"}
