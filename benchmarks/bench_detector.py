"""Detector speed and peak memory: gsfc-tf's Faster R-CNN vs torchvision's `FasterRCNN`.

Both use a ResNet-50 + FPN backbone (random weights), the same square image size, batch,
proposal counts and ROI sampling; each framework runs in its own subprocess so peak RSS is
its own (and torch is imported without TensorFlow, avoiding the triton load-order crash).
The subprocesses alternate (TF, torch, TF, torch, ...) so both see the same machine load, and
each row is the median step time over all rounds.

    python -m benchmarks.bench_detector [--quick] [--rounds N] [--results PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["main"]

_PROPOSALS = dict(pre_train=2000, post_train=1000, pre_test=1000, post_test=1000, roi_samples=512)
_QUICK_PROPOSALS = dict(pre_train=600, post_train=300, pre_test=300, post_test=300, roi_samples=128)


def _synthetic_batch(batch, size, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(batch, size, size, 3)).astype(np.float32)
    corner = rng.uniform(0, size * 0.8, (batch, 3, 2))
    side = rng.uniform(size * 0.04, size * 0.12, (batch, 3, 1))
    boxes_yxyx = np.concatenate([corner, corner + side], axis=-1).astype(np.float32)
    labels = rng.integers(0, 2, (batch, 3)).astype(np.int32)
    return images, boxes_yxyx, labels


def _timed(step, warmup, iters):
    """Seconds of each of `iters` calls of `step` after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def _run_tf(size, batch, warmup, iters, proposals):
    import keras
    import numpy as np
    import tensorflow as tf

    from gsfc_tf.config import paper
    from gsfc_tf.models import build_detector

    config = paper(
        backbone="resnet50",
        image_size=size,
        max_clumps=3,
        rpn_pre_nms_top_k_train=proposals["pre_train"],
        rpn_post_nms_top_k_train=proposals["post_train"],
        rpn_pre_nms_top_k_test=proposals["pre_test"],
        rpn_post_nms_top_k_test=proposals["post_test"],
        roi_samples_per_image=proposals["roi_samples"],
    )
    model = build_detector(config)
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
    images, boxes_yxyx, labels = _synthetic_batch(batch, size)
    targets = {"boxes_yxyx": tf.constant(boxes_yxyx), "labels": tf.constant(labels)}
    images = tf.constant(images)
    predict = tf.function(lambda x: model(x, training=False))
    train_s = _timed(lambda: model.train_on_batch(images, targets), warmup, iters)
    infer_s = _timed(lambda: {k: np.asarray(v) for k, v in predict(images).items()}, warmup, iters)
    return train_s, infer_s


def _run_torch(size, batch, warmup, iters, proposals):
    import torch
    import torchvision

    torch.set_num_threads(os.cpu_count())
    model = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=3,
        min_size=size,
        max_size=size,
        rpn_pre_nms_top_n_train=proposals["pre_train"],
        rpn_post_nms_top_n_train=proposals["post_train"],
        rpn_pre_nms_top_n_test=proposals["pre_test"],
        rpn_post_nms_top_n_test=proposals["post_test"],
        box_batch_size_per_image=proposals["roi_samples"],
        trainable_backbone_layers=5,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    images, boxes_yxyx, labels = _synthetic_batch(batch, size)
    image_list = [torch.from_numpy(im).permute(2, 0, 1).contiguous() for im in images]
    targets = [{"boxes": torch.from_numpy(b[:, [1, 0, 3, 2]].copy()), "labels": torch.from_numpy(lb + 1).long()} for b, lb in zip(boxes_yxyx, labels)]

    def train_step():
        model.train()
        losses = model(image_list, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()

    def infer_step():
        model.eval()
        with torch.no_grad():
            model(image_list)

    return _timed(train_step, warmup, iters), _timed(infer_step, warmup, iters)


def _child(args):
    proposals = _QUICK_PROPOSALS if args.quick else _PROPOSALS
    if args.framework == "torch":
        train_s, infer_s = _run_torch(args.size, args.batch, args.warmup, args.iters, proposals)
    else:
        train_s, infer_s = _run_tf(args.size, args.batch, args.warmup, args.iters, proposals)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"train_s": train_s, "infer_s": infer_s, "peak_mib": peak_mib}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small image, few proposals and iterations")
    parser.add_argument("--framework", choices=["tf", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--iters", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None, help="subprocesses per framework, alternating")
    parser.add_argument("--results", type=Path, default=None, help="the RESULTS.md to update")
    args = parser.parse_args(argv)
    # 256 px keeps a full run near 3 minutes with 12 timed steps per row on 2 cores.
    args.size = args.size or (128 if args.quick else 256)
    args.iters = args.iters or (1 if args.quick else 6)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.rounds = args.rounds or (1 if args.quick else 2)
    if args.framework:
        _child(args)
        return 0

    runs = {"tf": [], "torch": []}
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        for framework in runs:
            command = [sys.executable, "-m", "benchmarks.bench_detector", "--framework", framework,
                       "--size", str(args.size), "--batch", str(args.batch), "--iters", str(args.iters),
                       "--warmup", str(args.warmup)]
            command += ["--quick"] if args.quick else []
            # PyTorch's OpenMP threads spin at barriers by default, stalling for seconds on a busy machine.
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
            output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
            runs[framework].append(json.loads(output.strip().splitlines()[-1]))
            print(framework, runs[framework][-1], flush=True)
    results = {
        framework: {
            "train_img_s": args.batch / statistics.median(t for run in framework_runs for t in run["train_s"]),
            "infer_img_s": args.batch / statistics.median(t for run in framework_runs for t in run["infer_s"]),
            "peak_mib": max(run["peak_mib"] for run in framework_runs),
        }
        for framework, framework_runs in runs.items()
    }

    # machine_description() imports tensorflow then torch; triton segfaults unless torch,
    # timm and torchvision are loaded first.
    import timm  # noqa: F401
    import torchvision  # noqa: F401

    from benchmarks.results import RESULTS_PATH, markdown_table, write_section

    ours, ref = results["tf"], results["torch"]
    proposals = _QUICK_PROPOSALS if args.quick else _PROPOSALS
    rows = [
        ["train images/s", f"{ours['train_img_s']:.2f}", f"{ref['train_img_s']:.2f}", f"{ours['train_img_s'] / ref['train_img_s']:.2f}x"],
        ["inference images/s", f"{ours['infer_img_s']:.2f}", f"{ref['infer_img_s']:.2f}", f"{ours['infer_img_s'] / ref['infer_img_s']:.2f}x"],
        ["peak RSS (MiB)", f"{ours['peak_mib']:.0f}", f"{ref['peak_mib']:.0f}", f"{ours['peak_mib'] / ref['peak_mib']:.2f}x"],
    ]
    body = (
        f"ResNet-50 + FPN, random weights, {args.size}x{args.size} px, batch {args.batch}, "
        f"proposals {proposals}; {args.rounds} alternating subprocess(es) per framework, each {args.iters} timed "
        f"steps after {args.warmup} warm-up; images/s from the median step; peak RSS is the largest of the "
        f"framework's subprocesses; jit_compile off; all {os.cpu_count()} cores each, `OMP_WAIT_POLICY=PASSIVE`. "
        f"Ratio > 1 means gsfc-tf is faster (memory: larger). 1-minute load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} "
        "after (shared machine).\n\n"
        + markdown_table(["metric", "gsfc-tf (Keras 3)", "torchvision FasterRCNN", "ratio"], rows)
    )
    write_section("detector", "Faster R-CNN detector vs torchvision" + (" (quick)" if args.quick else ""), body,
                  path=args.results or RESULTS_PATH)
    return 0


if __name__ == "__main__":
    sys.exit(main())
