"""`make bench` cannot rot: `run_all --quick` runs every benchmark script end to end.

The quick mode uses tiny sizes and steps, so its numbers mean nothing; the test checks that
every script runs and fills its section, in a temporary RESULTS.md (the committed one is never
touched), with a table of figures. Timings are never asserted.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from benchmarks import run_all

_ROOT = Path(__file__).resolve().parents[1]


def _sections(text: str) -> dict[str, str]:
    return dict(re.findall(r"<!-- begin (\w+) -->\n(.*?)<!-- end \1 -->", text, re.S))


def _table_rows(section: str) -> list[list[str]]:
    """The body rows of every markdown table in `section`, headers and separators dropped."""
    rows = []
    for block in section.split("\n\n"):
        lines = [line for line in block.strip().splitlines() if line.startswith("|")]
        rows += [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    return rows


# The benchmarks that train (accuracy, torchvision parity, survey) take most of the quick run's
# minutes: `make test` runs the others, `make test-slow` runs them all.
_TRAINING_BENCHMARKS = ("accuracy", "accuracy_torchvision", "survey")


def _quick_bench(tmp_path, data_dir: str, only: list[str] | None = None) -> dict[str, str]:
    """Runs `run_all --quick` (only `only`, or all) into a temporary RESULTS.md; returns its sections."""
    results = tmp_path / "RESULTS.md"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_all", "--quick", "--results", str(results), "--data-dir", data_dir,
         *(["--only", *only] if only else [])],
        cwd=_ROOT, capture_output=True, text=True,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    ran = [name for name in run_all.BENCHMARKS if only is None or name in only]
    sections = _sections(results.read_text())
    assert list(sections) == ["run", *ran]
    run_rows = {row[0]: row for row in _table_rows(sections["run"])}
    assert list(run_rows) == ran
    assert all(run_rows[name][2] == "ok" for name in ran), run_rows
    return sections


def _check_figures(sections: dict[str, str], names) -> None:
    for name in names:
        rows = _table_rows(sections[name])
        assert rows, f"{name}: no table"
        numbers = [cell for row in rows for cell in row[1:] if re.fullmatch(r"[\d.]+x?%?", cell)]
        assert numbers, f"{name}: no figures in {rows}"


def test_quick_bench_fills_the_timing_sections(tmp_path, synthetic_small_data_dir):
    only = [name for name in run_all.BENCHMARKS if name not in _TRAINING_BENCHMARKS]
    sections = _quick_bench(tmp_path, synthetic_small_data_dir, only)
    _check_figures(sections, ("backbone", "detector", "export", "data", "flops"))
    if not tf.config.list_physical_devices("GPU"):
        assert "Not measured on this run" in sections["gpu"]


@pytest.mark.slow
def test_quick_bench_fills_every_section(tmp_path, synthetic_small_data_dir):
    sections = _quick_bench(tmp_path, synthetic_small_data_dir)
    _check_figures(sections, ("backbone", "detector", "export", "data", "flops", "accuracy", "survey"))
    # Every score is a fraction; the curve has one row per training-set size.
    accuracy_rows = _table_rows(sections["accuracy"])
    assert [row[0] for row in accuracy_rows] == ["`smoke`", "`bench`", "8", "16"]
    preset_rows, curve_rows = accuracy_rows[:2], accuracy_rows[2:]
    # Preset rows: ..., threshold, completeness, purity, AP50, false detections per Hubble background crop.
    assert all(0.0 <= float(cell) <= 1.0 for row in preset_rows for cell in row[5:7]), accuracy_rows
    assert all(float(row[-1]) >= 0.0 for row in preset_rows), accuracy_rows
    assert all(0.0 <= float(cell) <= 1.0 for row in curve_rows for cell in row[2:4]), accuracy_rows
    _check_parity_section(sections["accuracy_torchvision"])
    if not tf.config.list_physical_devices("GPU"):
        assert "Not measured on this run" in sections["gpu"]


def _check_parity_section(section: str) -> None:
    """Quick mode trains one seed per framework: both are scored, every score a fraction, and a ratio row."""
    rows = _table_rows(section)
    assert [row[0] for row in rows] == ["gsfc-tf", "torchvision", "gsfc-tf", "torchvision", "ratio gsfc-tf / torchvision"]
    assert all(0.0 <= float(cell) <= 1.0 for row in rows[:2] for cell in row[-3:]), rows


@pytest.mark.slow  # test_quick_bench_fills_every_section runs it too; this runs it alone
def test_quick_torchvision_parity_bench_alone(tmp_path, synthetic_small_data_dir):
    results = tmp_path / "RESULTS.md"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_all", "--quick", "--only", "accuracy_torchvision",
         "--results", str(results), "--data-dir", synthetic_small_data_dir],
        cwd=_ROOT, capture_output=True, text=True,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    _check_parity_section(_sections(results.read_text())["accuracy_torchvision"])
