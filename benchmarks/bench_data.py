"""Input pipeline vs model: tf.data training images/s against the train step's consumption.

The pipeline is the trainer's own (`trainer.load_split` → cache → `data.batch_examples`:
shuffle, dihedral augmentation, resize to the model's size, batch) on `clump_scout/synthetic_small`;
its first epoch also reads and decodes from TFDS and fills the cache, later epochs read the cache. The model's
consumption is the trainer's step (`FasterRCNN.losses_and_gradients` + Adam) on one fixed
batch. Each is timed alone; the pipeline must outrun the model by >= 5x so it never starves it.

    python -m benchmarks.bench_data [--quick] [--data-dir DIR] [--results PATH]
"""

from __future__ import annotations

# machine_description() imports torch after TensorFlow; triton segfaults unless timm and
# torchvision are loaded first.
import timm  # noqa: F401, I001
import torchvision  # noqa: F401

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from benchmarks.results import RESULTS_PATH, markdown_table, write_section
from gsfc_tf import config as presets
from gsfc_tf import data, trainer
from gsfc_tf.config import DetectorConfig, TrainConfig
from gsfc_tf.models import build_detector
from tfds_clumpscout.clump_scout.synthetic import generate_galaxies

__all__ = ["main", "pipeline_throughput", "train_throughput"]

# The pipeline must deliver this many times the model's images/s (issue 9).
REQUIRED_RATIO = 5.0


def train_throughput(
    detector: DetectorConfig,
    *,
    batch_size: int,
    steps: int,
    warmup: int = 2,
    precision: str = "float32",
    jit_compile: bool = False,
) -> float:
    """Median images/s of the trainer's optimiser step on one fixed batch of synthetic galaxies.

    Args:
        detector: the model to build (random weights).
        batch_size: images per step.
        steps: timed steps (the median step time is used).
        warmup: untimed steps first (tracing, allocator warm-up).
        precision: `float32` or `mixed_float16` (loss scaling as in the trainer).
        jit_compile: compile the step with XLA.
    """
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    model = build_detector(detector)
    optimizer = keras.optimizers.Adam(1e-4, global_clipnorm=10.0)
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    examples = data.galaxies_to_dataset(generate_galaxies(batch_size, seed=0), max_clumps=detector.max_clumps)
    images, targets = next(iter(data.batch_examples(examples, batch_size=batch_size, image_size=detector.image_size)))
    scale_loss = optimizer.scale_loss if precision == "mixed_float16" else None

    @tf.function(jit_compile=jit_compile)
    def step(images, targets):
        losses, gradients = model.losses_and_gradients(
            images, targets, weight_decay=5e-5, num_replicas=1, scale_loss=scale_loss
        )
        optimizer.apply(gradients, model.trainable_variables)
        return losses["loss"]

    for _ in range(warmup):
        step(images, targets).numpy()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step(images, targets).numpy()  # .numpy() waits for the step to finish
        times.append(time.perf_counter() - start)
    keras.mixed_precision.set_global_policy("float32")
    return batch_size / statistics.median(times)


def pipeline_throughput(config: TrainConfig, *, data_dir: str | None, epochs: int = 3) -> list[float]:
    """Images/s the training input pipeline delivers, one figure per epoch (the first fills the cache).

    Builds exactly what `trainer.train` iterates: prepared examples, cached, shuffled over the
    whole set, augmented, batched and prefetched.
    """
    examples, count = trainer.load_split(config, config.train_split, data_dir=data_dir)
    if config.train_size is not None:
        examples, count = examples.take(config.train_size), config.train_size
    examples = examples.cache()
    rates = []
    for epoch in range(epochs):
        batches = data.batch_examples(
            examples,
            batch_size=config.batch_size_per_replica,
            image_size=config.detector.image_size,
            augment=True,
            shuffle_buffer=count,
            seed=epoch,
        )
        start, images = time.perf_counter(), 0
        for batch_images, _ in batches:
            images += int(batch_images.shape[0])
        rates.append(images / (time.perf_counter() - start))
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke model only, 64 galaxies, few steps")
    parser.add_argument("--data-dir", default=None, help="TFDS data dir (default: TFDS's)")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="the RESULTS.md to update")
    args = parser.parse_args(argv)
    steps = 3 if args.quick else 10
    dataset = "clump_scout/synthetic_small"
    configs = {"smoke": presets.smoke_training(dataset=dataset)}
    if not args.quick:
        configs["paper"] = presets.paper_training(dataset=dataset)

    load_before = os.getloadavg()[0]
    rows, ratios = [], []
    for name, config in configs.items():
        if args.quick:
            config = dataclasses.replace(config, train_size=64)
        detector = config.detector
        cold, *warm = pipeline_throughput(config, data_dir=args.data_dir)
        model_rate = train_throughput(detector, batch_size=config.batch_size_per_replica, steps=steps)
        warm_rate = statistics.median(warm)
        ratios.append(min(cold, warm_rate) / model_rate)
        rows.append([
            f"`{name}` ({detector.backbone}, {detector.image_size} px, batch {config.batch_size_per_replica})",
            f"{cold:.0f}", f"{warm_rate:.0f}", f"{model_rate:.1f}",
            f"{cold / model_rate:.0f}x", f"{warm_rate / model_rate:.0f}x",
        ])
        print(rows[-1], flush=True)

    verdict = (
        f"The pipeline outruns the model by at least {min(ratios):.0f}x (required: {REQUIRED_RATIO:.0f}x)."
        if min(ratios) >= REQUIRED_RATIO
        else f"WARNING: the pipeline is only {min(ratios):.1f}x the model's rate (required: {REQUIRED_RATIO:.0f}x)."
    )
    table = markdown_table(
        ["preset", "tf.data img/s, epoch 1 (+ TFDS read, decode)", "tf.data img/s, cached epochs",
         "train step img/s", "epoch 1 / model", "cached / model"],
        rows,
    )
    body = (
        f"`{dataset}` train split{' (first 64 galaxies)' if args.quick else ''}; pipeline = the trainer's "
        "(cache, shuffle over the whole split, random dihedral augmentation, resize, batch, prefetch), tf.data AUTOTUNE "
        f"threads; model = one optimiser step (Adam, random weights, no XLA), median of {steps} after 2 warm-ups, "
        f"TF's default threads. Each timed alone on {os.cpu_count()} cores; 1-minute load average "
        f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after. {verdict}\n\n" + table
    )
    write_section("data", "Input pipeline vs model consumption" + (" (quick)" if args.quick else ""), body,
                  path=args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
