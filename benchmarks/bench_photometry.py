"""Clump photometry and host segmentation against the synthetic generator's truth.

Writes `synthetic_fits.write_synthetic_fits(.., n, seed=2026)` cutouts, finds each host with
`host.segment_host` on the ugriz `detection_image` and measures every true clump (at its true centre) with
`photometry.clump_photometry`: each `CORRECTIONS` (the authors' point-source correction and
`resolved`, with the cutouts' PSF images, and `resolved` with a Gaussian PSF of the FWHM).
Reports, per band, the median |relative flux error| and the median error of the normal clumps
with r-band box SNR > 10 (the generator's), the median |error| their flux errors alone would give, the 8 % and 3 % u-band flags' agreement with the
truth, the share of true clumps on the host and the host's flux over its truth. Then the
evidence for `photometry.MERGE_DISTANCE_FWHM`: how a second detection of a clump, d FWHM away,
changes its catalogued flux when kept or merged, and how close the true clumps come.

    python -m benchmarks.bench_photometry [--quick] [--galaxies N] [--results PATH]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from astropy.table import Table, vstack

from benchmarks.results import RESULTS_PATH, markdown_table, write_section
from gsfc_tf.host import detection_image, segment_host
from gsfc_tf.photometry import clump_photometry, merge_detections
from tfds_clumpscout.clump_scout.synthetic import BAND_NAMES
from tfds_clumpscout.clump_scout.synthetic_fits import TRUTH_TABLE_NAME, read_bands, write_synthetic_fits

__all__ = ["duplicate_detection_changes", "main", "measure_against_truth", "relative_errors"]

SEED = 2026
# (label, resolved, with the cutouts' PSF images); the first two are `measure_against_truth`'s default.
CORRECTIONS = (("point", False, True), ("resolved", True, True), ("resolved, Gaussian PSF", True, False))
DUPLICATE_DISTANCES_FWHM = (0.5, 1.0, 1.25, 1.5, 2.0)


def measure_against_truth(
    out_dir: Path, n: int, *, seed: int = SEED, corrections=CORRECTIONS[:2]
) -> tuple[dict[str, Table], list]:
    """Writes `n` synthetic cutouts to `out_dir` and measures their true clumps.

    Returns:
        ({label of `corrections`: the truth table's rows with the measured columns, `meas_` where
        the names clash}, [(host, true host x, true host y) per galaxy, in the arrays' pixel frame]).
    """
    _, truth_path = write_synthetic_fits(out_dir, n, seed=seed)
    truth = Table.read(truth_path)
    tables, hosts = {label: [] for label, _, _ in corrections}, []
    for galaxy_id in np.unique(truth["galaxy_id"]):
        rows = truth[truth["galaxy_id"] == galaxy_id]
        cutout = read_bands(out_dir / rows["file"][0])
        images = {band: cutout.images[band] for band in BAND_NAMES}
        host = segment_host(detection_image(images.values()), fwhm_px=cutout.psf_fwhm_px["r"])
        height = cutout.images["r"].shape[0]
        hosts.append((host, rows["host_x"][0] - 0.5, height - 0.5 - rows["host_y"][0]))
        centres = np.stack([rows["x_fits"], rows["y_fits"]], axis=1)
        for label, resolved, with_psf_images in corrections:
            table = clump_photometry(
                images,
                centres,
                fwhm_px=cutout.psf_fwhm_px,
                zero_point=cutout.zero_points,
                gain=cutout.gains,
                psf_images=cutout.psf_images if with_psf_images else None,
                host=host,
                wcs=cutout.wcs,
                resolved=resolved,
            )
            clashing = [name for name in table.colnames if name in rows.colnames]
            table.rename_columns(clashing, ["meas_" + name for name in clashing])
            for name in rows.colnames:
                table[name] = rows[name]
            tables[label].append(table)
    return {label: vstack(parts) for label, parts in tables.items()}, hosts


def duplicate_detection_changes(out_dir: Path, *, seed: int = SEED) -> tuple[list[list], float]:
    """How a duplicate detection of each galaxy's brightest clump (r SNR > 10) changes its flux.

    A second detection d FWHM away (random direction) is either kept, the clump's flux then being
    both rows' sum, or merged with the first (`merge_detections`: one row at their mean). r band,
    point-source photometry, the other clumps measured too.

    Returns:
        (rows [d, kept, merged, n]: median changes against one detection, over the true flux;
        the closest two true clumps of a galaxy come, in FWHM).
    """
    truth = Table.read(out_dir / TRUTH_TABLE_NAME)
    rng = np.random.default_rng(seed)
    changes = {d: ([], []) for d in DUPLICATE_DISTANCES_FWHM}
    closest = np.inf
    for galaxy_id in np.unique(truth["galaxy_id"]):
        rows = truth[truth["galaxy_id"] == galaxy_id]
        fwhm = float(rows["psf_fwhm"][0])
        centres = np.stack([rows["x_fits"], rows["y_fits"]], axis=1)
        gaps = np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1)) + np.diag(np.full(len(rows), np.inf))
        closest = min(closest, float(gaps.min()) / fwhm)
        k = int(np.argmax(rows["snr_r"]))
        if rows["snr_r"][k] <= 10:
            continue
        image = {"r": read_bands(out_dir / rows["file"][0]).images["r"]}
        options = {"fwhm_px": {"r": fwhm}, "zero_point": {"r": 22.5}}
        true_flux = float(rows["flux_r"][k])
        single = float(clump_photometry(image, centres, **options)["flux_r"][k])
        for distance, (kept, merged) in changes.items():
            angle = rng.uniform(0.0, 2 * np.pi)
            duplicate = centres[k] + distance * fwhm * np.array([np.cos(angle), np.sin(angle)])
            detections = np.vstack([centres, duplicate])
            both = clump_photometry(image, detections, **options)["flux_r"]
            kept.append((both[k] + both[-1] - single) / true_flux)
            joined, _, member_of = merge_detections(detections, fwhm_px=fwhm, distance_fwhm=distance * 1.01)
            merged.append((clump_photometry(image, joined, **options)["flux_r"][member_of[k]] - single) / true_flux)
    rows = [[d, f"{np.median(k):+.3f}", f"{np.median(m):+.3f}", len(k)] for d, (k, m) in changes.items()]
    return rows, closest


def relative_errors(table: Table, band: str, selection) -> np.ndarray:
    """(measured - true) / true flux in `band` of the rows in `selection`."""
    return np.asarray((table[f"meas_flux_{band}"] - table[f"flux_{band}"]) / table[f"flux_{band}"])[selection]


def _flag_agreement(table: Table, selection, threshold: float, column: str) -> float:
    truth = np.asarray(table["flux_ratio_u"] > threshold)
    return float(np.mean((np.asarray(table[column]) == truth)[selection]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 galaxies")
    parser.add_argument("--galaxies", type=int, default=150, help="galaxies to measure (default 150)")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="the RESULTS.md to update")
    args = parser.parse_args(argv)
    # write_section's machine_description() imports torch after TensorFlow; triton segfaults
    # unless timm and torchvision are loaded first. Here, not at the top: the tests import
    # `measure_against_truth` without them.
    import timm  # noqa: F401
    import torchvision  # noqa: F401

    n = 8 if args.quick else args.galaxies
    with tempfile.TemporaryDirectory() as folder:
        tables, hosts = measure_against_truth(Path(folder), n, corrections=CORRECTIONS)
        duplicates, closest = duplicate_detection_changes(Path(folder))

    rows = []
    for correction, table in tables.items():
        bright = np.asarray(table["snr_r"] > 10)
        for label, kind in ((0, "normal"), (1, "odd")):
            selection = bright & np.asarray(table["label"] == label)
            errors = {band: relative_errors(table, band, selection) for band in BAND_NAMES}
            rows.append([
                correction, kind, int(selection.sum()),
                *(f"{np.median(np.abs(e)):.3f} ({np.median(e):+.3f})" for e in errors.values()),
            ])
        rows[-2] += [f"{_flag_agreement(table, bright, 0.08, 'is_clump_8pct'):.3f}",
                     f"{_flag_agreement(table, bright, 0.03, 'is_clump_3pct'):.3f}"]
        rows[-1] += ["", ""]
        print(rows[-2], rows[-1], flush=True)
    table = tables["resolved"]
    normal = np.asarray(table["snr_r"] > 10) & np.asarray(table["label"] == 0)
    # A normal error's median |value| is 0.6745 sigma.
    rows.append(["noise (the flux errors alone)", "normal", int(normal.sum()), *(
        f"{0.6745 * np.median(np.asarray(table[f'flux_err_{band}'] / table[f'flux_{band}'])[normal]):.3f}"
        for band in BAND_NAMES
    ), "", ""])
    offsets = [np.hypot(host.x - x, host.y - y) for host, x, y in hosts]
    host_ratio = np.asarray(table["meas_host_flux_r"] / table["host_flux_r"])
    body = (
        f"{n} galaxies (seed {SEED}), {len(table)} true clumps measured at their true centres; cells are "
        "median |relative flux error| (median error) for clumps with the generator's r-band box SNR > 10; "
        "flags in u, agreement with the truth over those clumps. \"PSF images\": the aperture correction for "
        "the PSF image each cutout carries, else for a Gaussian of its FWHM; the last row is the median "
        "|error| that the resolved photometry's flux errors alone would give.\n\n"
        + markdown_table(
            ["correction", "clumps", "n", *BAND_NAMES, "8 % flag", "3 % flag"], rows
        )
        + f"\n\nHost: found in {sum(host.found for host, _, _ in hosts)}/{n}; centroid {np.median(offsets):.2f} px "
        f"from the truth (median); {np.mean(~np.asarray(table['off_host'])):.3f} of the true clumps on its "
        f"segment; r-band Kron flux / true {np.median(host_ratio):.3f} (median).\n\n"
        "A second detection of each galaxy's brightest clump, d FWHM away: median change of the clump's "
        "catalogued r flux (over its true flux) when both rows are kept (their sum) or merged into one. "
        f"The closest two true clumps are {closest:.2f} FWHM apart.\n\n"
        + markdown_table(["d (FWHM)", "kept", "merged", "clumps"], duplicates)
    )
    write_section("photometry", "Clump photometry against synthetic truth", body, path=args.results)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
