"""Exported SavedModel vs the in-memory detector: batch-1 latency and batch-16 throughput on CPU.

Random weights; synthetic 200x200 galaxy crops. Four paths, all timed in one process:
`model.predict` on prepared float inputs, the in-memory `tf.function` on uint8 images
(`detector.Detector`), and the SavedModel's `serving_tensor` (uint8) and `serving_default`
(PNG bytes, decoded in the graph).

    python -m benchmarks.bench_export [--quick] [--iters N] [--results PATH]
"""

from __future__ import annotations

# machine_description() imports torch after TensorFlow; triton segfaults unless timm and
# torchvision are loaded first.
import timm  # noqa: F401, I001
import torchvision  # noqa: F401

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke detector (tiny backbone), few iterations")
    parser.add_argument("--iters", type=int, default=None, help="timed calls per measurement")
    parser.add_argument("--results", default=None, help="the RESULTS.md to update (default benchmarks/RESULTS.md)")
    args = parser.parse_args(argv)
    iters = args.iters or (2 if args.quick else 5)

    import keras
    import numpy as np
    import tensorflow as tf

    from benchmarks.results import RESULTS_PATH, markdown_table, write_section
    from benchmarks.timing import median_seconds
    from gsfc_tf.config import paper, smoke
    from gsfc_tf.data import model_inputs
    from gsfc_tf.detector import BYTES_SIGNATURE, TENSOR_SIGNATURE, Detector, load_exported
    from gsfc_tf.export import export_saved_model
    from gsfc_tf.models import build_detector
    from tfds_clumpscout.clump_scout.synthetic import generate_galaxies

    keras.utils.set_random_seed(0)
    config = smoke() if args.quick else paper()
    model = build_detector(config)
    images = np.stack([galaxy.image for galaxy in generate_galaxies(16, seed=0)])
    encoded = np.array([tf.io.encode_png(image).numpy() for image in images], dtype=object)

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        export_saved_model(model, f"{tmp}/1")
        export_s = time.perf_counter() - start
        serving = load_exported(f"{tmp}/1").saved_model.signatures
        detect = Detector.from_model(model).detect_fn
        paths = {
            "in-memory `model.predict` (prepared float32)": lambda n: model.predict(
                model_inputs(images[:n], image_size=config.image_size)[0], batch_size=n, verbose=0
            ),
            "in-memory `tf.function` (uint8)": lambda n: detect(tf.constant(images[:n])),
            f"SavedModel `{TENSOR_SIGNATURE}` (uint8)": lambda n: serving[TENSOR_SIGNATURE](images=tf.constant(images[:n])),
            f"SavedModel `{BYTES_SIGNATURE}` (PNG bytes)": lambda n: serving[BYTES_SIGNATURE](
                image_bytes=tf.constant(encoded[:n])
            ),
        }
        latency_s = median_seconds({name: lambda run=run: run(1) for name, run in paths.items()}, warmup=1 if args.quick else 2, repeats=iters)
        batch_s = median_seconds({name: lambda run=run: run(16) for name, run in paths.items()}, warmup=1, repeats=iters)
    rows = [[name, f"{latency_s[name] * 1e3:.0f}", f"{16 / batch_s[name]:.1f}"] for name in paths]
    print(markdown_table(["path", "batch 1 ms", "batch 16 images/s"], rows), flush=True)

    detector = (
        f"{config.backbone}, {config.image_size} px input"
        + (" (smoke config)" if args.quick else " (paper config)")
        + f", {config.rpn_post_nms_top_k_test} proposals"
    )
    body = (
        f"{detector}, random weights, 200x200 synthetic crops; median of {iters} timed calls per path "
        "(the paths take turns) after warm-up; "
        f"export (trace + write) took {export_s:.0f} s. 1-minute load average {load_before:.1f} before and "
        f"{os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores, shared: a higher load slows every row).\n\n"
        + markdown_table(["path", "batch 1 latency (ms)", "batch 16 throughput (images/s)"], rows)
    )
    write_section("export", "Exported SavedModel vs in-memory detector (CPU)" + (" (quick)" if args.quick else ""), body,
                  path=Path(args.results or RESULTS_PATH))
    return 0


if __name__ == "__main__":
    sys.exit(main())
