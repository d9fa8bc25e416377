"""FLOPs per image of the detector and the fraction of this machine's peak that it reaches.

FLOPs come from TensorFlow's graph profiler (`tf.compat.v1.profiler`, `float_operation()`) on
the traced inference function and on the traced loss-and-gradient function, batch 1, so they
count every op with registered FLOP statistics (convolutions, their gradients, matmuls,
elementwise ops; a multiply-add is 2 FLOPs). ROI align (`CropAndResize`) and the NMS loops have
none and are not counted: they are a small share. The practical peak is the measured rate of a
large float32 matmul on the same threads; achieved = FLOPs/image x measured images/s.

    python -m benchmarks.bench_flops [--quick] [--results PATH]
"""

from __future__ import annotations

# machine_description() imports torch after TensorFlow; triton segfaults unless timm and
# torchvision are loaded first.
import timm  # noqa: F401, I001
import torchvision  # noqa: F401

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import tensorflow as tf

from benchmarks.bench_data import train_throughput
from benchmarks.results import RESULTS_PATH, markdown_table, write_section
from gsfc_tf import config as presets
from gsfc_tf.config import DetectorConfig
from gsfc_tf.models import build_detector
from gsfc_tf.models.faster_rcnn import LOSS_NAMES

__all__ = ["detector_flops", "main", "matmul_gflops"]


def _graph_flops(graph: tf.Graph) -> int:
    options = tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    ).with_empty_output().build()
    return int(tf.compat.v1.profiler.profile(graph, options=options).total_float_ops)


def detector_flops(detector: DetectorConfig) -> tuple[int, int]:
    """(inference FLOPs, training FLOPs: losses and all weight gradients) for one image."""
    model = build_detector(detector)
    size, clumps = detector.image_size, detector.max_clumps
    image_spec = tf.TensorSpec([1, size, size, 3], tf.float32)
    target_spec = {
        "boxes_yxyx": tf.TensorSpec([1, clumps, 4], tf.float32),
        "labels": tf.TensorSpec([1, clumps], tf.int32),
    }

    def losses_and_gradients(images, targets):
        with tf.GradientTape() as tape:
            losses = model.compute_losses(images, targets, training=True)
            total = tf.add_n([losses[name] for name in LOSS_NAMES])
        return tape.gradient(total, model.trainable_variables)

    infer = tf.function(lambda images: model(images, training=False)).get_concrete_function(image_spec)
    train = tf.function(losses_and_gradients).get_concrete_function(image_spec, target_spec)
    return _graph_flops(infer.graph), _graph_flops(train.graph)


def matmul_gflops(n: int, repeats: int = 5) -> float:
    """Median GFLOP/s of an n x n float32 matmul (2 n^3 FLOPs) after a warm-up."""
    a = tf.random.stateless_uniform([n, n], seed=[0, 1])
    b = tf.random.stateless_uniform([n, n], seed=[1, 2])
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    matmul().numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul().numpy()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def _inference_throughput(detector: DetectorConfig, *, batch_size: int, iters: int) -> float:
    model = build_detector(detector)
    images = tf.random.stateless_uniform([batch_size, detector.image_size, detector.image_size, 3], seed=[0, 0])
    predict = tf.function(lambda x: model(x, training=False))
    predict(images)["num_detections"].numpy()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        predict(images)["num_detections"].numpy()
        times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke detector only, small matmul, few iterations")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="the RESULTS.md to update")
    args = parser.parse_args(argv)
    iters, matmul_n = (2, 512) if args.quick else (5, 2048)
    configs = {"smoke": presets.smoke_training()}
    if not args.quick:
        configs["paper (default)"] = presets.paper_training()

    load_before = os.getloadavg()[0]
    peak = matmul_gflops(matmul_n)
    print(f"matmul {matmul_n}: {peak:.1f} GFLOP/s", flush=True)
    rows = []
    for name, config in configs.items():
        detector, batch = config.detector, config.batch_size_per_replica
        infer_flops, train_flops = detector_flops(detector)
        infer_rate = _inference_throughput(detector, batch_size=batch, iters=iters)
        train_rate = train_throughput(detector, batch_size=batch, steps=iters)
        for mode, flops, rate in (("inference", infer_flops, infer_rate), ("train step", train_flops, train_rate)):
            achieved = flops * rate / 1e9
            rows.append([
                f"`{name}` {mode}", f"{detector.backbone}, {detector.image_size} px, batch {batch}",
                f"{flops / 1e9:.2f}", f"{rate:.1f}", f"{achieved:.1f}", f"{achieved / peak:.0%}",
            ])
            print(rows[-1], flush=True)

    table = markdown_table(
        ["detector", "setup", "GFLOPs / image", "measured images/s", "achieved GFLOP/s", "fraction of peak"], rows
    )
    body = (
        "GFLOPs per image from TF's graph profiler on the traced function (batch 1; training = losses and the "
        "gradients of every weight, optimiser update excluded; ROI align and NMS are not counted). Images/s: "
        f"median of {iters} calls (random weights, no XLA, TF's default threads). Practical peak: a {matmul_n}x"
        f"{matmul_n} float32 matmul on the same threads reached **{peak:.1f} GFLOP/s**; the last column is achieved "
        f"/ that peak. 1-minute load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after "
        f"({os.cpu_count()} cores, shared: load lowers both the peak and the achieved rate).\n\n" + table
    )
    write_section("flops", "FLOPs and fraction of peak" + (" (quick)" if args.quick else ""), body, path=args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
