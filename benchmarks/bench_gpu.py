"""GPU training throughput of the default detector: mixed precision on/off, XLA on/off.

Measured only when TensorFlow sees a GPU; otherwise the section says it was not measured and
why, so RESULTS.md never shows GPU numbers that this run did not produce. Throughput is per
GPU: one GPU runs the trainer's step (`bench_data.train_throughput`) on a fixed batch.

    python -m benchmarks.bench_gpu [--quick] [--results PATH]
"""

from __future__ import annotations

# machine_description() imports torch after TensorFlow; triton segfaults unless timm and
# torchvision are loaded first.
import timm  # noqa: F401, I001
import torchvision  # noqa: F401

import argparse
import os
import sys
from pathlib import Path

import keras
import tensorflow as tf

from benchmarks.bench_data import train_throughput
from benchmarks.results import RESULTS_PATH, markdown_table, write_section
from gsfc_tf import config as presets

__all__ = ["main"]

_TITLE = "GPU training throughput"


def _measure(gpu, *, quick: bool) -> str:
    details = tf.config.experimental.get_device_details(gpu)
    device = details.get("device_name", gpu.name)
    detector = presets.smoke() if quick else presets.paper()
    batch, steps = (2, 2) if quick else (16, 10)
    rows = []
    for precision in ("float32", "mixed_float16"):
        for jit_compile in (False, True):
            keras.backend.clear_session()
            try:
                rate = f"{train_throughput(detector, batch_size=batch, steps=steps, precision=precision, jit_compile=jit_compile):.1f}"
            except (tf.errors.OpError, ValueError) as error:
                # Report the failure in the row: XLA may lack a kernel the step needs.
                rate = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
                keras.mixed_precision.set_global_policy("float32")
            rows.append([precision, "on" if jit_compile else "off", rate])
            print(rows[-1], flush=True)
    return (
        f"Device: **{device}** (1 of {len(tf.config.list_physical_devices('GPU'))} visible GPUs), compute capability "
        f"{details.get('compute_capability', 'unknown')}. `{detector.backbone}`, {detector.image_size} px, batch "
        f"{batch} per GPU, the trainer's optimiser step on a fixed synthetic batch, median of {steps} steps after "
        "2 warm-ups.\n\n" + markdown_table(["precision", "XLA (`jit_compile`)", "train images/s per GPU"], rows)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke detector, tiny batch")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="the RESULTS.md to update")
    args = parser.parse_args(argv)
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        body = _measure(gpus[0], quick=args.quick)
    else:
        body = (
            "**Not measured on this run**: TensorFlow sees no GPU on this machine "
            f"(`tf.config.list_physical_devices('GPU')` is empty; CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}), so none was measured. "
            "On a CUDA machine `make bench` fills this section with train images/s per GPU for the default "
            "detector, mixed precision (`mixed_float16`) on/off and XLA (`jit_compile`) on/off, naming the device."
        )
    write_section("gpu", _TITLE + (" (quick)" if args.quick else ""), body, path=args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
