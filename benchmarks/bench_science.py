"""The science steps: the host mask against synthetic truth and on the Hubble deep field, and their cost.

Four measurements:

1. The on-host rule on true positions: the share of the true clumps of `generate_bands(n,
   seed=77)` off the host (`host.segment_host`) under each of `RULES` (its threshold, and its
   neighbours split off or not), on the FITS bands' `detection_image` and on the PNG composite's
   luminance (`catalogue.read_science`).
2. A detector on synthetic test galaxies (`generate_galaxies(n, seed=2)`: the first n of the
   `clump_scout/synthetic` test split, never trained on) at its operating threshold, as
   `predict` catalogues their PNG composites: completeness and purity at IoU 0.5 and by centre
   (`conventions.CENTRE_MATCH_DISTANCE`) with the host mask off and on (drop), and the
   detections matching no clump on and off the host.
3. The same detector on the Hubble deep field's galaxy and background crops (`realimages`), its
   detections sorted by the 5-sigma source they fall on (`realimages.segment_sources`): the
   central galaxy's, another source's, or none; on and off the host, under each of `RULES`.
4. Cost: seconds per galaxy of the science steps as `predict` runs them (`read_science` and
   `catalogue_galaxy` on the true boxes, host mask off and drop) on `gsfc-tf synthetic-fits`
   cutouts (ugriz photometry) and on their PNG composites (host only), against the detector's
   seconds per image (batches of 8 in memory) and `read_cutout`'s. (`predict` reads a FITS
   cutout with named bands once, `read_galaxy`: its picture costs less than `read_cutout`.)

The detector is the `make demo` export unless `--model` names another; a run without one says so
in its section. `--quick` uses a few galaxies and an untrained `smoke` export (its numbers mean
nothing).

    python -m benchmarks.bench_science [--model PATH] [--galaxies N] [--quick] [--results PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.table import Table
from PIL import Image

from benchmarks.results import RESULTS_PATH, markdown_table, write_section
from gsfc_tf import conventions, realimages
from gsfc_tf.catalogue import ScienceImage, catalogue_galaxy, read_cutout, read_science
from gsfc_tf.evaluation import greedy_match
from gsfc_tf.host import N_SIGMA, NEIGHBOUR_N_SIGMA, detection_image, segment_host
from tfds_clumpscout.clump_scout.synthetic import generate_bands, generate_galaxies
from tfds_clumpscout.clump_scout.synthetic_fits import truth_boxes, write_synthetic_fits

__all__ = ["HdfCrop", "detector_on_synthetic", "hdf_crops", "hdf_on_host", "main", "science_seconds", "truth_off_host"]

RULE_SEED = 77  # galaxies the rule was chosen on: not the test split's
TEST_SEED = 2  # `clump_scout/synthetic`'s test split (builder seed 3 * synthetic_seed + 2)
# `segment_host`'s (n_sigma, neighbour_n_sigma): its threshold, and its neighbours' (None: not split).
DEFAULT_RULE = (N_SIGMA, NEIGHBOUR_N_SIGMA)
RULES = ((3.0, NEIGHBOUR_N_SIGMA), (2.5, NEIGHBOUR_N_SIGMA), (N_SIGMA, None), DEFAULT_RULE)
DEMO_EXPORT = Path("out/demo/export/gsfc_tf/1")
_SOURCE_KINDS = ("central", "other", "none")
_BATCH = 8


def _picture_science(image: np.ndarray) -> ScienceImage:
    """What `predict` segments a PNG cutout on (`read_science` reads no file for a picture)."""
    return read_science("galaxy.png", image)


def _off_host(science: ScienceImage, x_image, y_image, rule: tuple[float, float | None]) -> np.ndarray:
    """bool [N]: whether points in image coordinates lie off the host, found as `catalogue_galaxy`
    finds it under `rule` ((n_sigma, neighbour_n_sigma))."""
    height = science.detection.shape[0]
    x, y = conventions.image_to_fits_pixels(np.asarray(x_image, float), np.asarray(y_image, float), height=height)
    n_sigma, neighbour_n_sigma = rule
    # Under the cutout's centre, `segment_host`'s default.
    host = segment_host(science.detection, fwhm_px=science.fwhm_px, n_sigma=n_sigma,
                        neighbour_n_sigma=neighbour_n_sigma)
    return ~host.contains(x, y)


def _rule_name(rule: tuple[float, float | None]) -> str:
    n_sigma, neighbour_n_sigma = rule
    split = "not split" if neighbour_n_sigma is None else f"split at {neighbour_n_sigma:g} sigma"
    return f"{n_sigma:g}, {split}" + (" (default)" if rule == DEFAULT_RULE else "")


def truth_off_host(n: int, rules=RULES) -> tuple[dict[tuple[str, tuple], float], int]:
    """({("FITS" or "PNG", rule): share of the true clumps off the host}, clumps)."""
    off = {(kind, rule): [] for kind in ("FITS", "PNG") for rule in rules}
    for bands in generate_bands(n, seed=RULE_SEED):
        y, x = bands.clump_yx.T
        sciences = {
            # The FITS cutout's rows run upward: the stored arrays are the image's flipped.
            "FITS": ScienceImage(detection_image(bands.images)[::-1], None, bands.psf_fwhm, ""),
            "PNG": _picture_science(bands.galaxy.image),
        }
        for (kind, rule), flags in off.items():
            flags.extend(_off_host(sciences[kind], x, y, rule))
    return {key: float(np.mean(flags)) for key, flags in off.items()}, len(off["FITS", rules[0]])


@dataclasses.dataclass(frozen=True)
class HdfCrop:
    """One Hubble deep field crop's detections at the threshold.

    Attributes:
        kind: "galaxy" or "background" (`realimages.galaxy_crops`, `background_crops`).
        image: uint8 [S, S, 3].
        x, y: [D] the detections' centres, image coordinates.
        sources: [D] the 5-sigma source each falls on: "central" (the crop centre's), "other" or "none".
    """

    kind: str
    image: np.ndarray
    x: np.ndarray
    y: np.ndarray
    sources: np.ndarray


def hdf_crops(detector, threshold: float, *, n_galaxy: int = 20, n_background: int = 8) -> list[HdfCrop]:
    """The deep field's crops with the detector's detections scoring at least `threshold`."""
    field = realimages.hubble_deep_field()
    crops = [("galaxy", c) for c in realimages.galaxy_crops(field, n_galaxy)]
    crops += [("background", c) for c in realimages.background_crops(field, n_background)]
    found = detector.detect_boxes(np.stack([crop.image for _, crop in crops]))
    result = []
    for (kind, crop), detections in zip(crops, found):
        x, y = conventions.box_centres_xy(detections.select(detections.scores >= threshold).boxes_yxyx).T
        labels = realimages.segment_sources(crop.image)
        size = crop.image.shape[0]
        row, column = (np.clip(np.floor(v).astype(int), 0, size - 1) for v in (y, x))
        central = labels[size // 2, size // 2]
        source = labels[row, column]
        kinds = np.where(source == 0, "none", np.where((source == central) & (central > 0), "central", "other"))
        result.append(HdfCrop(kind, crop.image, x, y, kinds))
    return result


def hdf_on_host(crops: list[HdfCrop], rule=DEFAULT_RULE) -> dict[tuple[str, str], tuple[int, int]]:
    """{(crop kind, source kind): (detections on the host, detections)} under `rule` ((n_sigma, neighbour_n_sigma))."""
    counts = {(kind, source): [0, 0] for kind in ("galaxy", "background") for source in _SOURCE_KINDS}
    for crop in crops:
        on = ~_off_host(_picture_science(crop.image), crop.x, crop.y, rule)
        for source in _SOURCE_KINDS:
            count = counts[crop.kind, source]
            count[0] += int(on[crop.sources == source].sum())
            count[1] += int((crop.sources == source).sum())
    return {key: tuple(value) for key, value in counts.items()}


def _purity(matched: int, detections: int) -> float:
    # `evaluation`'s convention: no detection is no false one.
    return matched / detections if detections else 1.0


def detector_on_synthetic(detector, threshold: float, n: int) -> dict[str, dict]:
    """Scores the detector on `n` synthetic test galaxies with the host mask off and on (drop).

    Returns:
        {"off" / "drop": {criterion: (completeness, purity)}, "unmatched": {criterion: (on the
        host, off it)}, "truths", "truths_off_host", "detections", "detections_off_host"}.
    """
    criteria = {"IoU 0.5": dict(iou_threshold=0.5), "centre": dict(iou_threshold=None,
                                                               centre_distance=conventions.CENTRE_MATCH_DISTANCE)}
    galaxies = list(generate_galaxies(n, seed=TEST_SEED))
    found = []
    for start in range(0, n, _BATCH):
        found += detector.detect_boxes(np.stack([g.image for g in galaxies[start : start + _BATCH]]))
    counts = {name: np.zeros(5, int) for name in criteria}  # truths, matched all, matched on-host, unmatched on, off
    n_detections = n_off = n_truths_off = 0
    for k, (galaxy, detections) in enumerate(zip(galaxies, found)):
        science = _picture_science(galaxy.image)
        rows = catalogue_galaxy(f"g{k}", detections, science, min_score=threshold, host_mask="flag").rows
        kept = detections.select(detections.scores >= threshold)
        off_host = np.array([row.off_host for row in rows], bool)
        n_detections += len(kept)
        n_off += int(off_host.sum())
        true_x, true_y = conventions.box_centres_xy(galaxy.boxes_yxyx).T
        n_truths_off += int(_off_host(science, true_x, true_y, DEFAULT_RULE).sum())
        for name, criterion in criteria.items():
            matched = greedy_match(galaxy.boxes_yxyx, kept.boxes_yxyx, kept.scores, **criterion) >= 0
            on_host = kept.select(~off_host)
            matched_on_host = greedy_match(galaxy.boxes_yxyx, on_host.boxes_yxyx, on_host.scores, **criterion) >= 0
            counts[name] += [len(galaxy.labels), matched.sum(), matched_on_host.sum(),
                             (~matched & ~off_host).sum(), (~matched & off_host).sum()]
    n_truths = int(counts["IoU 0.5"][0])
    result = {"off": {}, "drop": {}, "unmatched": {}}
    for name, (truths, matched, matched_on_host, unmatched_on, unmatched_off) in counts.items():
        result["off"][name] = (matched / truths, _purity(matched, n_detections))
        result["drop"][name] = (matched_on_host / truths, _purity(matched_on_host, n_detections - n_off))
        result["unmatched"][name] = (int(unmatched_on), int(unmatched_off))
    result.update(truths=n_truths, truths_off_host=n_truths_off, detections=n_detections, detections_off_host=n_off)
    return result


def science_seconds(detector, folder: Path, n: int) -> dict[str, float]:
    """Seconds per galaxy: {"detector", "read FITS", "read PNG", (kind, host mask) for kind FITS or PNG
    and host mask "off" or "drop": `read_science` + `catalogue_galaxy` on the true boxes}."""
    paths, truth_path = write_synthetic_fits(folder, n, seed=TEST_SEED)
    truth = Table.read(truth_path)
    inputs = {"FITS": paths, "PNG": [path.with_suffix(".png") for path in paths]}
    for fits_path, png_path in zip(*inputs.values()):
        Image.fromarray(read_cutout(fits_path).image).save(png_path)
    boxes = [truth_boxes(truth, path.name) for path in paths]
    seconds = {}
    for kind, kind_paths in inputs.items():
        start = time.perf_counter()
        cutouts = [read_cutout(path) for path in kind_paths]
        seconds[f"read {kind}"] = (time.perf_counter() - start) / n
        for mode in ("off", "drop"):
            start = time.perf_counter()
            for path, cutout, detections in zip(kind_paths, cutouts, boxes):
                catalogue_galaxy("g", detections, read_science(path, cutout.image), wcs=cutout.wcs, host_mask=mode)
            seconds[kind, mode] = (time.perf_counter() - start) / n
    images = np.stack([cutout.image for cutout in cutouts[:_BATCH]])
    detector.detect(images)  # traced once
    start = time.perf_counter()
    for _ in range(4):
        detector.detect(images)
    seconds["detector"] = (time.perf_counter() - start) / (4 * len(images))
    return seconds


def _quick_model(folder: Path) -> str:
    """An untrained `smoke` export: the pipeline runs, the numbers mean nothing."""
    import keras

    from gsfc_tf.config import smoke
    from gsfc_tf.export import export_saved_model
    from gsfc_tf.models import build_detector

    keras.utils.set_random_seed(0)
    return str(export_saved_model(build_detector(smoke()), folder / "export" / "1"))


def _fraction(pair) -> str:
    return f"{pair[0]}/{pair[1]}"


def _body(args, model: str, threshold: float, truth_share, n_clumps, synthetic, crops, seconds) -> str:
    rule_rows = [[_rule_name(rule), f"{truth_share['FITS', rule]:.3f}", f"{truth_share['PNG', rule]:.3f}",
                  *(_fraction(hdf[key]) for key in (("galaxy", "central"), ("galaxy", "other"), ("galaxy", "none"),
                                                   ("background", "other"), ("background", "none")))]
                 for rule, hdf in ((rule, hdf_on_host(crops, rule)) for rule in RULES)]
    score_rows = []
    for name in ("IoU 0.5", "centre"):
        for mode, label in (("off", "all (`off`, `flag`)"), ("drop", "on the host (`drop`, default)")):
            completeness, purity = synthetic[mode][name]
            score_rows.append([name, label, f"{completeness:.3f}", f"{purity:.3f}"])
    unmatched = synthetic["unmatched"]
    n_galaxy = sum(crop.kind == "galaxy" for crop in crops)
    n_background = len(crops) - n_galaxy
    return (
        f"Detector: `{model}` at its operating threshold {threshold:.2f}. Rule chosen on {args.rule_galaxies} "
        f"galaxies of seed {RULE_SEED} ({n_clumps} clumps); the detector scored on {args.galaxies} galaxies of "
        f"the `synthetic` test split (seed {TEST_SEED}), as PNG composites.\n\n"
        "**The rule.** Share of the true clumps off the host (centre of the true box), and the deep field's "
        f"detections on the host by the 5-sigma source they fall on ({n_galaxy} galaxy crops, {n_background} "
        "background crops; a detection on another source or on none should be off):\n\n"
        + markdown_table(["n_sigma, neighbours", "true clumps off, FITS", "off, PNG", "HDF galaxy crops: on central",
                          "on other", "on none", "HDF background: on other", "on none"], rule_rows)
        + f"\n\n**The mask on the detector's catalogue** ({synthetic['detections']} detections, "
        f"{synthetic['detections_off_host']} off the host; {synthetic['truths']} true clumps, "
        f"{synthetic['truths_off_host']} of them off the host):\n\n"
        + markdown_table(["matching", "detections", "completeness", "purity"], score_rows)
        + "\n\nDetections matching no clump, on the host / off it: "
        + "; ".join(f"{name} {on} / {off}" for name, (on, off) in unmatched.items()) + "."
        + f"\n\n**Cost** per galaxy ({args.cost_galaxies} synthetic 200-px cutouts with their true boxes; the "
        f"detector {seconds['detector'] * 1e3:.0f} ms per image, batches of {_BATCH}):\n\n"
        + markdown_table(
            ["input", "read_cutout (ms)", "science, host mask off (ms)", "science, drop (ms)", "drop over the detector"],
            [[kind, f"{seconds[f'read {kind}'] * 1e3:.1f}", f"{seconds[kind, 'off'] * 1e3:.1f}",
              f"{seconds[kind, 'drop'] * 1e3:.1f}", f"{seconds[kind, 'drop'] / seconds['detector']:.2f}x"]
             for kind in ("PNG", "FITS")]
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None,
                        help=f"detector to measure (default the `make demo` export, {DEMO_EXPORT})")
    parser.add_argument("--galaxies", type=int, default=400,
                        help="synthetic test galaxies for the detector (default 400)")
    parser.add_argument("--rule-galaxies", type=int, default=150, help="synthetic galaxies for the rule (default 150)")
    parser.add_argument("--cost-galaxies", type=int, default=50, help="synthetic cutouts timed (default 50)")
    parser.add_argument("--quick", action="store_true", help="a few galaxies and an untrained model")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="the RESULTS.md to update")
    args = parser.parse_args(argv)
    # write_section's machine_description() imports torch after TensorFlow; triton segfaults
    # unless timm and torchvision are loaded first.
    import timm  # noqa: F401
    import torchvision  # noqa: F401

    from gsfc_tf.detector import default_min_score, load_detector

    title = "The science steps: the host mask against synthetic truth and on the Hubble deep field, and their cost"
    if args.quick:
        args.galaxies, args.rule_galaxies, args.cost_galaxies = 4, 4, 8
    with tempfile.TemporaryDirectory() as folder:
        model = _quick_model(Path(folder)) if args.quick and args.model is None else args.model or str(DEMO_EXPORT)
        if not Path(model).exists():
            write_section("science", title, f"Not measured on this run: no model at `{model}` (run `make demo`, "
                          "or pass `--model`).", path=args.results)
            return 0
        detector = load_detector(model)
        threshold = default_min_score(detector)
        truth_share, n_clumps = truth_off_host(args.rule_galaxies)
        synthetic = detector_on_synthetic(detector, threshold, args.galaxies)
        crops = hdf_crops(detector, threshold)
        seconds = science_seconds(detector, Path(folder) / "cost", args.cost_galaxies)
        body = _body(args, model, threshold, truth_share, n_clumps, synthetic, crops, seconds)
    write_section("science", title, body, path=args.results)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
