"""Writes benchmark rows into `benchmarks/RESULTS.md`, one named section per benchmark.

Each benchmark owns a section between `<!-- begin NAME -->` / `<!-- end NAME -->` markers, so
running one benchmark rewrites its own rows and leaves the others as they were.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
from pathlib import Path

__all__ = ["RESULTS_PATH", "add_training_arguments", "machine_description", "markdown_table", "training_budget",
           "write_section"]

RESULTS_PATH = Path(__file__).with_name("RESULTS.md")
_HEADER = "# Benchmark results\n\nWritten by the scripts in `benchmarks/` (`make bench` runs them all).\n"


def machine_description() -> str:
    """One line naming the CPU, core count, memory and library versions of this run."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = []
    for module_name in ("tensorflow", "keras", "torch", "timm", "torchvision"):
        try:
            module = __import__(module_name)
            versions.append(f"{module_name} {module.__version__}")
        except ImportError:
            continue
    return f"{cpu}, {os.cpu_count()} cores, {memory_gib:.0f} GiB; " + ", ".join(versions)


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, title: str, body: str, *, path: Path = RESULTS_PATH) -> None:
    """Replaces (or appends) section `name` with `title`, the machine, the date and `body`."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"<!-- begin {name} -->\n## {title}\n\n"
        f"Measured {stamp} on {machine_description()}.\n\n{body.strip()}\n<!-- end {name} -->"
    )
    text = path.read_text() if path.exists() else _HEADER
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """`--quick`, `--data-dir` and `--results`: the options of every benchmark that trains."""
    parser.add_argument("--quick", action="store_true", help="a few steps on a few galaxies")
    parser.add_argument("--data-dir", default=None, help="TFDS data dir (default: TFDS's)")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="the RESULTS.md to update")


def training_budget(quick: bool) -> tuple[str, dict]:
    """The split scored and the `TrainConfig` overrides: with `quick`, tiny budgets that still run every code path."""
    if quick:
        return "test[:8]", dict(steps=2, batch_size_per_replica=4, validation_size=8)
    return "test", {}
