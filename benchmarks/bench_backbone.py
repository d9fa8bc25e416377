"""Backbone speed: our Keras Zoobot backbones against the timm originals, on the same CPU, in one run.

Times forward (inference mode) and forward+backward (training mode, gradients of the summed
C1..C5 means with respect to every weight) per image, median of several runs after warm-up,
Keras and timm alternating so both see the same machine load, both on 2 threads; graph mode for Keras (`tf.function`, no XLA), eager PyTorch.
Writes the `backbone` section of `benchmarks/RESULTS.md` (or of `--results`); `--quick` (64x64,
one repeat) is the smoke mode `run_all --quick` uses.

    python -m benchmarks.bench_backbone [--quick] [--repeats N] [--results PATH]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# PyTorch's OpenMP threads spin at barriers by default; on a busy 2-core machine that stalls
# a step for seconds while the partner thread is descheduled. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# timm loads triton's native library, which segfaults if TensorFlow is already loaded.
import timm  # noqa: E402
import torch  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.results import RESULTS_PATH, markdown_table, write_section  # noqa: E402
from benchmarks.timing import median_seconds  # noqa: E402
from gsfc_tf.backbones import build_backbone  # noqa: E402

_THREADS = 2
_WARMUP = 3
_PAIRS = {"zoobot_efficientnet_b0": "efficientnet_b0", "zoobot_resnet50": "resnet50"}


def _keras_steps(name: str, images: np.ndarray):
    model = build_backbone(name, input_shape=images.shape[1:])
    images = tf.constant(images)

    @tf.function
    def forward():
        return model(images, training=False)

    @tf.function
    def forward_backward():
        with tf.GradientTape() as tape:
            features = model(images, training=True)
            loss = tf.add_n([tf.reduce_mean(f) for f in features.values()])
        return tape.gradient(loss, model.trainable_variables)

    # .numpy() waits for the result: TF may return before the work is done.
    return (lambda: [v.numpy() for v in forward().values()]), (lambda: [g.numpy() for g in forward_backward()])


def _timm_steps(arch: str, images: np.ndarray):
    model = timm.create_model(arch, pretrained=False, features_only=True)
    images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()

    def forward():
        model.eval()
        with torch.inference_mode():
            model(images)

    def forward_backward():
        model.train()
        model.zero_grad(set_to_none=True)
        sum(f.mean() for f in model(images)).backward()

    return forward, forward_backward


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64x64, one repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="the RESULTS.md to update")
    args = parser.parse_args(argv)
    torch.set_num_threads(_THREADS)
    tf.config.threading.set_intra_op_parallelism_threads(_THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    sizes, repeats, batch = ((64,), 1, 2) if args.quick else ((200, 400), args.repeats, args.batch)

    load_before = os.getloadavg()[0]
    rows = []
    for name, arch in _PAIRS.items():
        for size in sizes:
            images = np.random.default_rng(0).random((batch, size, size, 3), dtype=np.float32)
            keras_steps, timm_steps = _keras_steps(name, images), _timm_steps(arch, images)
            row = [name, f"{size}x{size}", batch]
            for index in range(2):  # forward, then forward+backward
                # PyTorch's oneDNN builds its kernels over the first few calls at a new shape.
                seconds = median_seconds(
                    {"keras": keras_steps[index], "timm": timm_steps[index]}, warmup=_WARMUP, repeats=repeats
                )
                keras_ms, timm_ms = (1000 * seconds[framework] / batch for framework in ("keras", "timm"))
                row += [f"{keras_ms:.1f}", f"{timm_ms:.1f}", f"{keras_ms / timm_ms:.2f}"]
            rows.append(row)
            print(rows[-1], flush=True)

    header = ["backbone", "input", "batch", "Keras fwd ms/img", "timm fwd ms/img", "Keras/timm",
              "Keras fwd+bwd ms/img", "timm fwd+bwd ms/img", "Keras/timm"]
    table = markdown_table(header, rows)
    print(table)
    body = (
        f"Per-image time, median of {repeats} runs (Keras and timm alternating) after {_WARMUP} warm-ups, "
        f"{_THREADS} threads each; Keras in "
        "`tf.function` without XLA, timm `features_only` in eager PyTorch (NCHW, `OMP_WAIT_POLICY=PASSIVE`). "
        "fwd: inference mode; "
        "fwd+bwd: training mode, gradients of all weights. Keras/timm > 1 means Keras is slower. "
        f"1-minute load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after "
        "(the machine is shared; a load above the core count inflates both columns).\n\n" + table
    )
    write_section("backbone", "Backbone speed: Keras vs timm" + (" (quick)" if args.quick else ""), body,
                  path=args.results)


if __name__ == "__main__":
    main()
