"""Survey throughput: single-process `gsfc-tf predict` vs `gsfc-tf survey` on Beam's DirectRunner.

Synthetic 400x400 PNG cutouts (`generate_galaxies`) and an exported smoke detector (random
weights, so the pipeline, not the model, dominates). Each path runs in its own subprocess, on a
small and on a large input list: images/s is the slope, (large - small) images / (large - small)
seconds, so start-up (TensorFlow import, model load and tracing, Beam worker start) is counted
apart (`--quick` runs the large list only, start-up included). The Beam path runs
`direct_running_mode=multi_processing` with 2 workers; peak memory per worker is the largest
worker process's peak RSS. The model's own rate is the detector on in-memory images, timed in the
`predict` process; overhead is the per-image time beyond it. Both paths run with the science steps
(the default host mask, `drop`: on PNG cutouts the host's segmentation) and without them
(`--host-mask off`).

The GZ DESI estimate (8.7 M cutouts) is on paper: the paper detector's own per-core time on this
machine (measured here on a few batches) plus the measured Beam overhead per image, in
core-hours, the workers for a day's run and their cost at an assumed list price.

    python -m benchmarks.bench_survey [--quick] [--images N] [--results PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main"]

GZ_DESI_CUTOUTS = 8_700_000
# Assumed: Dataflow batch list price per vCPU-hour (us-central1, 2024), memory billed apart and
# ignored; 4-vCPU workers. Only the arithmetic is ours: replace the price with your own.
PRICE_PER_VCPU_HOUR_USD = 0.056
VCPUS_PER_WORKER = 4
_BATCH = 8
_UNIQUE_GALAXIES = 50


def _peak_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def _write_cutouts(folder: Path, n: int) -> list[str]:
    """n PNG files from `_UNIQUE_GALAXIES` galaxies (decoding cost does not depend on the content)."""
    import tensorflow as tf

    from tfds_clumpscout.clump_scout.synthetic import generate_galaxies

    encoded = [tf.io.encode_png(g.image).numpy() for g in generate_galaxies(min(n, _UNIQUE_GALAXIES), seed=0, image_size=400)]
    paths = []
    for k in range(n):
        path = folder / f"g{k:06d}.png"
        path.write_bytes(encoded[k % len(encoded)])
        paths.append(str(path))
    return paths


def _child(args) -> dict:
    """One measurement in this fresh process; returns what the parent records."""
    paths = Path(args.inputs).read_text().split()
    start = time.perf_counter()
    if args.child == "predict":
        from gsfc_tf.catalogue import predict_catalogue
        from gsfc_tf.detector import load_detector

        detector = load_detector(args.model)
        predict_catalogue(detector, paths, min_score=0.5, batch_size=_BATCH, host_mask=args.host_mask)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "peak_mib": _peak_mib(), "model_seconds_per_image": _model_seconds(detector, paths, args.quick)}
    if args.child == "survey":
        from gsfc_tf.survey import run_survey

        options = ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
        run_survey(args.model, args.out, patterns=paths, min_score=0.5, batch_size=_BATCH, host_mask=args.host_mask,
                   pipeline_args=options)
        return {"seconds": time.perf_counter() - start, "peak_mib": _peak_mib(), "worker_peak_mib": _peak_mib(resource.RUSAGE_CHILDREN)}
    # "paper": the paper detector's own rate, for the GZ DESI estimate.
    from gsfc_tf.config import paper
    from gsfc_tf.detector import Detector
    from gsfc_tf.models import build_detector

    return {"model_seconds_per_image": _model_seconds(Detector.from_model(build_detector(paper())), paths, args.quick)}


def _model_seconds(detector, paths: list[str], quick: bool) -> float:
    """Seconds per image of the detector alone on one in-memory batch, after a warm-up call."""
    import numpy as np

    from gsfc_tf.catalogue import read_cutout

    images = np.stack([read_cutout(path)[0] for path in paths[:_BATCH]])
    detector.detect(images)
    batches = 2 if quick else 4
    start = time.perf_counter()
    for _ in range(batches):
        detector.detect(images)
    return (time.perf_counter() - start) / (batches * _BATCH)


def _measure(child: str, model: str, paths: list[str], tmp: Path, quick: bool, host_mask: str = "drop") -> dict:
    inputs = tmp / f"{child}-{len(paths)}.txt"
    inputs.write_text("\n".join(paths))
    command = [sys.executable, "-m", "benchmarks.bench_survey", "--child", child, "--model", model, "--inputs",
               str(inputs), "--out", str(tmp / f"survey-{len(paths)}-{host_mask}" / "gz"), "--host-mask", host_mask]
    output = subprocess.run(command + (["--quick"] if quick else []), check=True, capture_output=True, text=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    print(child, host_mask, len(paths), result, flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few dozen cutouts, smoke detector for the estimate")
    parser.add_argument("--images", type=int, default=None, help="cutouts in the large list (default 2000; quick 16)")
    parser.add_argument("--results", default=None, help="the RESULTS.md to update (default benchmarks/RESULTS.md)")
    parser.add_argument("--child", choices=("predict", "survey", "paper"), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--host-mask", default="drop", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args)), flush=True)
        return 0
    # machine_description() imports torch after TensorFlow; triton segfaults unless timm and
    # torchvision are loaded first. Only here: torch in the measured subprocesses would inflate their memory.
    import timm  # noqa: F401
    import torchvision  # noqa: F401

    large = args.images or (16 if args.quick else 2000)
    small = large // 4
    sizes = (large,) if args.quick else (small, large)

    import keras

    from benchmarks.results import RESULTS_PATH, markdown_table, write_section
    from gsfc_tf.config import smoke
    from gsfc_tf.export import export_saved_model
    from gsfc_tf.models import build_detector

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        keras.utils.set_random_seed(0)
        model = str(export_saved_model(build_detector(smoke()), tmp / "export" / "1"))
        (tmp / "cutouts").mkdir()
        paths = _write_cutouts(tmp / "cutouts", large)
        runs = {
            (child, host_mask): {n: _measure(child, model, paths[:n], tmp, args.quick, host_mask) for n in sizes}
            for child in ("predict", "survey") for host_mask in ("drop", "off")
        }
        own = runs["predict", "drop"][large]["model_seconds_per_image"]
        # Quick mode skips building the paper detector; its estimate uses the smoke one.
        paper_own = own if args.quick else _measure("paper", model, paths, tmp, args.quick)["model_seconds_per_image"]

    def rate(child, host_mask="drop"):
        run = runs[child, host_mask]
        if args.quick:
            return large / run[large]["seconds"]
        return (large - small) / (run[large]["seconds"] - run[small]["seconds"])

    def start_up(child, host_mask="drop"):
        if args.quick:
            return "included"
        return f"{runs[child, host_mask][large]['seconds'] - large / rate(child, host_mask):.0f}"

    cores = os.cpu_count()
    beam_overhead = cores / rate("survey") - cores * own  # core-seconds per image beyond the model
    rows = [["detector alone (in-memory images, batch 8)", f"{1 / own:.1f}", f"{1 / (own * cores):.1f}", "", "", ""]]
    for host_mask, science in (("drop", "with the science steps"), ("off", "without (`--host-mask off`)")):
        predict_run, survey_run = runs["predict", host_mask][large], runs["survey", host_mask][large]
        rows += [
            [f"`predict` (one process), {science}", f"{rate('predict', host_mask):.1f}",
             f"{rate('predict', host_mask) / cores:.1f}", start_up("predict", host_mask),
             f"{predict_run['peak_mib']:.0f}", ""],
            [f"`survey`, DirectRunner multi_processing, 2 workers, {science}", f"{rate('survey', host_mask):.1f}",
             f"{rate('survey', host_mask) / cores:.1f}", start_up("survey", host_mask), f"{survey_run['peak_mib']:.0f}",
             f"{survey_run['worker_peak_mib']:.0f}"],
        ]
    per_image_core_s = paper_own * cores + max(beam_overhead, 0.0)
    core_hours = GZ_DESI_CUTOUTS * per_image_core_s / 3600
    workers_for_a_day = core_hours / 24 / VCPUS_PER_WORKER
    estimate_model = "the smoke detector (quick mode)" if args.quick else "the paper detector (random weights)"
    method = (
        "images/s = images / wall time, start-up included (quick mode)" if args.quick else
        f"images/s = extra images / extra seconds between the {small}- and {large}-image runs; start-up = the rest "
        "of the large run's wall time"
    )
    body = (
        f"{large} synthetic 400x400 PNG cutouts, exported smoke detector (random weights), batch {_BATCH}, minimum "
        f"score 0.5. {method}. Per core = over all "
        f"{cores} cores. Overhead of the Beam path beyond the detector alone: {beam_overhead * 1e3:.0f} core-ms per "
        f"image. 1-minute load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after (shared machine: "
        "a higher load slows every row).\n\n"
        + markdown_table(["path", "images/s", "images/s per core", "start-up (s)", "peak RSS (MiB)",
                          "peak RSS per worker (MiB)"], rows)
        + f"\n\n**GZ DESI on paper** ({GZ_DESI_CUTOUTS / 1e6:.1f} M cutouts): {estimate_model} takes "
        f"{paper_own * cores:.2f} core-s per image on this CPU, plus the Beam overhead above, so "
        f"{core_hours:,.0f} core-hours: {workers_for_a_day:,.0f} workers of {VCPUS_PER_WORKER} vCPUs finish in a day, "
        f"for about ${core_hours * PRICE_PER_VCPU_HOUR_USD:,.0f} at an assumed ${PRICE_PER_VCPU_HOUR_USD}/vCPU-hour "
        "(Dataflow batch list price, memory and storage not counted). No GPU rate is folded in: the `gpu` section "
        "gives one where a GPU was measured."
    )
    write_section("survey", "Survey inference on Apache Beam vs `predict` (CPU)" + (" (quick)" if args.quick else ""),
                  body, path=Path(args.results or RESULTS_PATH))
    return 0


if __name__ == "__main__":
    sys.exit(main())
