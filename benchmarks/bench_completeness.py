"""The selection function against the truth it replaces (issue #29).

Writes `synthetic` test galaxies (seed 2, the `clump_scout/synthetic` test split's: never trained
on, never used to choose a model; or with `--family heldout` those of `synthetic_heldout`, seed
3002, rendered from `synthetic.HELDOUT_FAMILY`) as FITS cutouts with
`synthetic_fits.write_synthetic_fits`, then on the same cutouts, with the same detector at its
operating threshold:

  - truth: which of the generator's own labelled clumps the detector finds (normal clumps,
    label 0, the blue star-forming kind injection draws; `completeness.match_injected`'s two rules
    with the generator's boxes and PSF FWHM), binned by their true u-band flux ratio;
  - copies: each true normal clump injected again, same fluxes and size, at its mirror image
    through the host's centre (`mirrored_recovery`): the generator's own population through the
    injection, picture and matching steps, which must recover what the truth does;
  - injection: `completeness.measure_completeness` at the geometric centres of the same bins,
    resolved up to 0.9 FWHM like the generator's clumps, once with the command's Gaussian PSF and
    once with a Moffat PSF of beta 2 (`HELDOUT_FAMILY`'s range, outside the training family's).

Goal: injection within 0.05 of the truth in every bin with at least 50 true clumps. Completeness
at one flux ratio depends on where a clump sits, so injection is also shown reweighted to where the
true clumps of each bin lie (by distance from the host's centre), and both by SNR; and the cost
per injected clump. The bins sit where the generator's clumps are (0.05-3 % of their host's u
light), not at the command's default 1-30 %.

    python -m benchmarks.bench_completeness --model out/demo/export/gsfc_tf [--galaxies N] [--family training|heldout]
        [--seed S] [--quick] [--results PATH]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from astropy.table import Table

from benchmarks.results import RESULTS_PATH, markdown_table, write_section
from gsfc_tf.bands import read_bands
from gsfc_tf.completeness import MATCH_RULES, InjectionSettings, match_injected, measure_completeness
from gsfc_tf.conventions import image_to_fits_pixels, pairwise_iou
from gsfc_tf.evaluation import DEFAULT_SNR_BIN_EDGES
from gsfc_tf.host import pixel_noise
from gsfc_tf.images import fits_picture, read_image
from gsfc_tf.injection import aperture_snr, inject_clumps, moffat_psf, truth_boxes
from tfds_clumpscout.clump_scout.synthetic import HELDOUT_FAMILY, TRAINING_FAMILY
from tfds_clumpscout.clump_scout.synthetic_fits import write_synthetic_fits

__all__ = ["FLUX_RATIO_BIN_EDGES", "binned", "main", "mirrored_recovery", "reweighted_by_distance", "truth_recovery"]

# Test galaxies by family: (the family, the seed of its test split). `clump_scout` split k has seed
# 3 * synthetic_seed + k: `synthetic`'s test is 2, `synthetic_heldout`'s (synthetic_seed 1000) 3002.
FAMILIES = {"training": (TRAINING_FAMILY, 2), "heldout": (HELDOUT_FAMILY, 3002)}
FLUX_RATIO_BIN_EDGES = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032)
MIN_CLUMPS = 50
GOAL = 0.05
VARIANTS = {
    "with a Gaussian PSF (the default), sigma up to 0.9 FWHM": {"max_size_fwhm": 0.9},
    "with a Moffat PSF of beta 2 (held out), sigma up to 0.9 FWHM": {"psf": moffat_psf(2.0), "max_size_fwhm": 0.9},
}


def truth_recovery(detector, folder: Path, *, min_score: float, batch_size: int = 16) -> Table:
    """The truth table of `folder` with, per true clump, `recovered_iou`, `recovered_centre` and `snr`.

    Each cutout is read as `predict` reads it (`images.read_image`) and detected once; `snr` is the
    clump's r-band SNR in its catalogue aperture, as injection measures its own (`injection.aperture_snr`).
    """
    truth = Table.read(folder / "truth.ecsv")
    files = list(dict.fromkeys(truth["file"]))
    recovered = {rule: np.zeros(len(truth), bool) for rule in MATCH_RULES}
    snr = np.zeros(len(truth))
    for start in range(0, len(files), batch_size):
        names = files[start : start + batch_size]
        found = detector.detect_boxes(np.stack([read_image(folder / name).rgb for name in names]))
        for name, detections in zip(names, found):
            rows = np.flatnonzero(truth["file"] == name)
            boxes = np.stack([truth[c][rows] for c in ("y_min", "x_min", "y_max", "x_max")], axis=1)
            kept = detections.select(detections.scores >= min_score)
            matched = match_injected(boxes, kept, fwhm_px=float(truth["psf_fwhm"][rows[0]]))
            for rule in MATCH_RULES:
                recovered[rule][rows] = matched[rule]
            bands = read_bands(folder / name)
            r = bands.images["r"]
            snr[rows] = aperture_snr(
                r, np.stack([truth["x_fits"][rows], truth["y_fits"][rows]], axis=1), truth["flux_r"][rows],
                fwhm_px=bands.psf_fwhm_px["r"], noise=pixel_noise(r), gain=bands.gains["r"],
                sizes_px=np.sqrt(truth["sigma_major"][rows] * truth["sigma_minor"][rows]),
            )
    for rule in MATCH_RULES:
        truth[f"recovered_{rule}"] = recovered[rule]
    truth["snr"] = snr
    return truth


def mirrored_recovery(detector, folder: Path, truth: Table, *, min_score: float, batch_size: int = 16) -> dict:
    """Which copies of the true normal clumps the detector recovers, each injected at its mirror image.

    Each copy has its clump's flux in every band and its size (`injection.inject_clumps`, Gaussian
    PSF) and sits at the point opposite it through the true host centre, where an inclined disc is
    as bright; copies off the image or whose box would touch a true clump's or another copy's are
    left out. The population is the generator's, so this checks the injection and matching alone.

    Returns:
        rule -> float [len(truth)]: 1 recovered, 0 missed, NaN not injected.
    """
    recovered = {rule: np.full(len(truth), np.nan) for rule in MATCH_RULES}
    copies = []  # (picture, truth rows, boxes, fwhm)
    rng = np.random.default_rng(0)
    for name in dict.fromkeys(truth["file"]):
        in_file = truth["file"] == name
        bands = read_bands(folder / name)
        height, width = bands.images["r"].shape
        fwhm = bands.reference_fwhm_px
        taken = np.stack([truth[c][in_file] for c in ("y_min", "x_min", "y_max", "x_max")], axis=1)
        rows = []
        for k in np.flatnonzero(in_file & (truth["label"] == 0)):
            x, y = 2 * truth["host_x"][k] - truth["x"][k], 2 * truth["host_y"][k] - truth["y"][k]
            box = truth_boxes([[x, y]], fwhm)
            if 0 <= x < width and 0 <= y < height and not (pairwise_iou(box, taken) > 0).any():
                rows.append((k, x, y))
                taken = np.concatenate([taken, box])
        if not rows:
            continue
        k, x, y = (np.array(column) for column in zip(*rows))
        images = inject_clumps(
            bands.images, np.stack(image_to_fits_pixels(x, y, height=height), axis=1),
            {band: np.asarray(truth[f"flux_{band}"][k]) for band in bands.images}, fwhm_px=bands.psf_fwhm_px,
            sizes_px=np.sqrt(truth["sigma_major"][k] * truth["sigma_minor"][k]), gains=bands.gains, noise_rng=rng,
        )
        picture = fits_picture(images["g"], images["r"], images["i"])[0]
        copies.append((picture, k, truth_boxes(np.stack([x, y], axis=1), fwhm), fwhm))
    for start in range(0, len(copies), batch_size):
        batch = copies[start : start + batch_size]
        for (_, rows, boxes, fwhm), found in zip(batch, detector.detect_boxes(np.stack([c[0] for c in batch]))):
            matched = match_injected(boxes, found.select(found.scores >= min_score), fwhm_px=fwhm)
            for rule in MATCH_RULES:
                recovered[rule][rows] = matched[rule]
    return recovered


def binned(values, recovered, edges) -> tuple[np.ndarray, np.ndarray]:
    """(count, recovered fraction) per bin [len(edges) - 1] of `values`; NaN for an empty bin."""
    values, recovered = np.asarray(values, np.float64), np.asarray(recovered, bool)
    inside = (values >= edges[0]) & (values < edges[-1])
    bins = np.digitize(values[inside], edges) - 1
    n = np.bincount(bins, minlength=len(edges) - 1)
    found = np.bincount(bins, weights=recovered[inside], minlength=len(edges) - 1)
    return n, np.divide(found, n, out=np.full(len(n), np.nan), where=n > 0)


def reweighted_by_distance(summary: dict, truth_distance_re, rule: str) -> np.ndarray:
    """Injection completeness at each flux ratio, its distance bins weighted as the true clumps' [K].

    `truth_distance_re`: per flux ratio of the grid, the true clumps' distances in that ratio bin.
    Distance bins without injected clumps are left out of the weights.
    """
    table = summary["by_flux_ratio_and_distance_re"]
    result = []
    for distances, curve in zip(truth_distance_re, table[f"completeness_{rule}"]):
        weights = np.bincount(np.digitize(distances, table["distance_bin_edges"]), minlength=len(curve))
        completeness = np.array([np.nan if c is None else c for c in curve])
        known = ~np.isnan(completeness) & (weights > 0)
        result.append(np.sum(weights[known] * completeness[known]) / weights[known].sum() if known.any() else np.nan)
    return np.array(result)


def _cell(value: float) -> str:
    return "" if np.isnan(value) else f"{value:.3f}"


def _misses(n_true, truth, injected, rule: str, labels) -> list[str]:
    return [f"{label} ({rule}, {b - a:+.2f})" for label, n, a, b in zip(labels, n_true, truth, injected)
            if n >= MIN_CLUMPS and not abs(b - a) <= GOAL]


def _flux_ratio_section(truth: Table, result, edges) -> tuple[str, dict[str, list[str]]]:
    """The flux-ratio table (truth, injection, injection reweighted by distance) and the bins missing the goal."""
    labels = [f"{100 * low:g}–{100 * high:g} %" for low, high in zip(edges[:-1], edges[1:])]
    which = [np.flatnonzero((truth["flux_ratio_u"] >= low) & (truth["flux_ratio_u"] < high))
             for low, high in zip(edges[:-1], edges[1:])]
    n_true = [len(rows) for rows in which]
    n_injected = result.summary["by_flux_ratio"]["n"]
    columns, misses = [], {"raw": [], "by distance": []}
    for rule in MATCH_RULES:
        _, truth_c = binned(truth["flux_ratio_u"], truth[f"recovered_{rule}"], edges)
        injected = np.array([np.nan if c is None else c for c in result.summary["by_flux_ratio"][f"completeness_{rule}"]])
        reweighted = reweighted_by_distance(result.summary, [truth["distance_re"][rows] for rows in which], rule)
        columns += [truth_c, injected, reweighted]
        misses["raw"] += _misses(n_true, truth_c, injected, rule, labels)
        misses["by distance"] += _misses(n_true, truth_c, reweighted, rule, labels)
    rows = [[label, n, m, *(_cell(column[k]) for column in columns)]
            for k, (label, n, m) in enumerate(zip(labels, n_true, n_injected))]
    header = ["u flux ratio", "true clumps", "injected"]
    header += [f"{what} {rule}" for rule in MATCH_RULES for what in ("truth", "injection", "reweighted")]
    return markdown_table(header, rows), misses


def _mirrored_section(truth: Table, mirrored: dict, edges) -> tuple[str, list[str]]:
    """The flux-ratio table of the mirrored copies against their own clumps, and the bins missing the goal."""
    labels = [f"{100 * low:g}–{100 * high:g} %" for low, high in zip(edges[:-1], edges[1:])]
    injected = ~np.isnan(mirrored["centre"])
    columns, misses = [], []
    for rule in MATCH_RULES:
        n, truth_c = binned(truth["flux_ratio_u"][injected], truth[f"recovered_{rule}"][injected], edges)
        _, copy_c = binned(truth["flux_ratio_u"][injected], mirrored[rule][injected] > 0, edges)
        columns += [truth_c, copy_c, copy_c - truth_c]
        misses += _misses(n, truth_c, copy_c, rule, labels)
    rows = [[label, count, *(_cell(column[k]) for column in columns)] for k, (label, count) in enumerate(zip(labels, n))]
    header = ["u flux ratio", "clumps", *(f"{what} {rule}" for rule in MATCH_RULES for what in ("truth", "copies", "Δ"))]
    return markdown_table(header, rows), misses


def _snr_section(truth: Table, injections: Table) -> str:
    edges = (0.0, *DEFAULT_SNR_BIN_EDGES[1:], 80.0, np.inf)
    labels = [f"{low:g}–{high:g}" for low, high in zip(edges[:-1], edges[1:])]
    columns = []
    for rule in MATCH_RULES:
        n_true, truth_c = binned(truth["snr"], truth[f"recovered_{rule}"], edges)
        n_injected, injected_c = binned(injections["snr"], injections[f"recovered_{rule}"], edges)
        columns += [truth_c, injected_c]
    rows = [[label, a, b, *(_cell(column[k]) for column in columns)]
            for k, (label, a, b) in enumerate(zip(labels, n_true, n_injected))]
    header = ["r SNR (aperture)", "true clumps", "injected", "truth iou", "injection iou", "truth centre", "injection centre"]
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="exported SavedModel, run directory or .keras file")
    parser.add_argument("--galaxies", type=int, default=300, help="test galaxies (default 300)")
    parser.add_argument("--family", choices=FAMILIES, default="training",
                        help="the generator family of the test galaxies (default training)")
    parser.add_argument("--seed", type=int, help="generator seed (default: the family's test split's, 2 or 3002)")
    parser.add_argument("--clumps-per-ratio", type=int, default=6, help="injected per galaxy and flux ratio (default 6)")
    parser.add_argument("--quick", action="store_true", help="8 galaxies")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="the RESULTS.md to update")
    args = parser.parse_args(argv)
    # write_section's machine_description() imports torch after TensorFlow; triton segfaults
    # unless timm and torchvision are loaded first.
    import timm  # noqa: F401
    import torchvision  # noqa: F401

    from gsfc_tf.detector import default_min_score, load_detector

    n = 8 if args.quick else args.galaxies
    family, seed = FAMILIES[args.family]
    seed = seed if args.seed is None else args.seed
    edges = FLUX_RATIO_BIN_EDGES
    centres = tuple(float(np.sqrt(low * high)) for low, high in zip(edges[:-1], edges[1:]))
    detector = load_detector(args.model)
    min_score = default_min_score(detector)
    sections = []
    with tempfile.TemporaryDirectory() as folder:
        paths, _ = write_synthetic_fits(folder, n, seed=seed, family=family)
        truth = truth_recovery(detector, Path(folder), min_score=min_score)
        normal = truth[truth["label"] == 0]
        table, misses = _mirrored_section(normal, mirrored_recovery(detector, Path(folder), normal, min_score=min_score),
                                          edges)
        sections.append(
            "**Copies of the true clumps at their mirror images** (the generator's population, injected): bins of "
            f"at least {MIN_CLUMPS} clumps missing the {GOAL:g} goal: {', '.join(misses) or 'none'}.\n\n{table}"
        )
        print(sections[-1], flush=True)
        for name, options in VARIANTS.items():
            settings = InjectionSettings(flux_ratios=centres, clumps_per_ratio=args.clumps_per_ratio, **options)
            result = measure_completeness(detector, paths, min_score=min_score, settings=settings, progress=True)
            # The true clumps' distances from the host, as injection measures them.
            hosts = {row["galaxy_id"]: row for row in result.galaxies}
            normal["distance_re"] = [
                np.hypot(x - hosts[g]["host_x"], y - hosts[g]["host_y"]) / hosts[g]["host_half_light_radius"]
                for g, x, y in zip(normal["galaxy_id"], normal["x"], normal["y"])
            ]
            table, misses = _flux_ratio_section(normal, result, edges)
            cost = result.summary["cost"]
            sections.append(
                f"**Injected {name}**: {len(result.injections)} clumps into {result.summary['n_galaxies_injected']} "
                f"galaxies, {1000 * cost['seconds_per_injected_clump']:.1f} ms per injected clump "
                f"({cost['seconds']:.0f} s, of which the detector {cost['detector_seconds']:.0f} s on "
                f"{cost['detector_pictures']} pictures). Median distance from the host's centre: injected "
                f"{np.median(result.injections['distance_re']):.2f}, true {np.median(normal['distance_re']):.2f} "
                f"half-light radii. Bins of at least {MIN_CLUMPS} true clumps missing the {GOAL:g} goal: "
                f"{', '.join(misses['raw']) or 'none'}; reweighted by distance: "
                f"{', '.join(misses['by distance']) or 'none'}.\n\n{table}\n\nBy SNR:\n\n"
                + _snr_section(normal, result.injections)
            )
            print(sections[-1], flush=True)
    body = (
        f"Model `{args.model}` at its operating threshold {min_score:.2f}; {n} synthetic galaxies of the "
        f"{family.name} family, seed {seed}, written as ugriz FITS, {len(normal)} of their clumps normal (label 0, compared here) and "
        f"{len(truth) - len(normal)} odd. Truth: the generator's normal clumps binned by their true u flux "
        "ratio, matched to the detections on the cutout at IoU ≥ 0.5 with their own boxes (iou) or by centre "
        "within 1 PSF FWHM (centre). Injection: `gsfc_tf.completeness` at each bin's geometric centre, "
        f"{args.clumps_per_ratio} clumps per galaxy and ratio, 3 at a time, boxes of `BOX_SIDE_PER_PSF_FWHM` "
        "FWHMs; reweighted: its completeness per distance bin (`by_flux_ratio_and_distance_re`) weighted as the "
        "true clumps of that flux-ratio bin lie. SNR: r band, in the catalogue's aperture, for both.\n\n"
        + "\n\n".join(sections)
    )
    section = "completeness" if args.family == "training" else f"completeness_{args.family}"
    write_section(section, f"Selection function: injection against the generator's own clumps, {family.name} family "
                  "(issue #29)", body, path=args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
