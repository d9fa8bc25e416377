"""`make bench`: runs every benchmark and rewrites `benchmarks/RESULTS.md` from this run alone.

Each benchmark runs in its own process, one after another (they would slow each other down):
that keeps peak memory per benchmark, keeps torch loaded before TensorFlow, and lets one
failure leave the other sections standing. The first section records the run itself (command,
wall time per benchmark, machine load); a benchmark that fails is listed there as FAILED and
the command exits non-zero.

    python -m benchmarks.run_all [--quick] [--results PATH] [--only NAME ...] [--data-dir DIR]

`--quick` runs every script in a seconds-scale mode (tiny sizes and steps) and writes to
`out/bench-quick/RESULTS.md` unless `--results` says otherwise; `tests/test_benchmarks.py`
runs it so the scripts cannot rot.
"""

from __future__ import annotations

# write_section's machine_description() imports torch after TensorFlow; triton segfaults
# unless timm and torchvision are loaded first.
import timm  # noqa: F401, I001
import torchvision  # noqa: F401

import argparse
import datetime
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.results import RESULTS_PATH, markdown_table, write_section

__all__ = ["BENCHMARKS", "main"]

_ROOT = Path(__file__).resolve().parents[1]

# name -> (module, arguments of the full run, takes --data-dir). Order = order in RESULTS.md.
# The full arguments keep `make bench` within 30 minutes on a 2-core CPU.
BENCHMARKS: dict[str, tuple[str, list[str], bool]] = {
    "backbone": ("benchmarks.bench_backbone", ["--repeats", "3"], False),
    "detector": ("benchmarks.bench_detector", ["--iters", "4"], False),
    "export": ("benchmarks.bench_export", ["--iters", "3"], False),
    "data": ("benchmarks.bench_data", [], True),
    "flops": ("benchmarks.bench_flops", [], False),
    "accuracy": ("benchmarks.bench_accuracy", [], True),
    "accuracy_torchvision": ("benchmarks.bench_accuracy_torchvision", [], True),
    "survey": ("benchmarks.bench_survey", [], False),
    "photometry": ("benchmarks.bench_photometry", [], False),
    "science": ("benchmarks.bench_science", [], False),
    "gpu": ("benchmarks.bench_gpu", [], False),
}


def _command(name: str, *, quick: bool, results: Path, data_dir: str | None) -> list[str]:
    module, full_arguments, takes_data_dir = BENCHMARKS[name]
    command = [sys.executable, "-m", module, *(["--quick"] if quick else full_arguments), "--results", str(results)]
    if takes_data_dir and data_dir:
        command += ["--data-dir", data_dir]
    return command


_RUN_HEADER = ["benchmark", "wall time (s)", "status", "finished (UTC)"]


def _previous_rows(results: Path) -> dict[str, list[str]]:
    """The run table already in `results`, by benchmark: an `--only` run keeps the other rows."""
    match = re.search(r"<!-- begin run -->.*?<!-- end run -->", results.read_text(), re.S) if results.exists() else None
    lines = [line for line in match.group(0).splitlines() if line.startswith("| ")] if match else []
    header, *rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines] or [[]]
    return {row[0]: row for row in rows if header == _RUN_HEADER and row[0] in BENCHMARKS}


def _write_run_section(results: Path, argv: list[str], rows: dict[str, list[str]], load: list[float], note: str):
    body = (
        f"Command: `python -m benchmarks.run_all {' '.join(argv)}`. Each benchmark ran alone in its own process; "
        f"1-minute load average {load[0]:.1f} at the start and {load[-1]:.1f} at the end on {os.cpu_count()} cores "
        f"(other users of the machine inflate every time below). {note}\n\n"
        + markdown_table(_RUN_HEADER, list(rows.values()))
    )
    write_section("run", "This run", body, path=results)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark in a seconds-scale mode")
    parser.add_argument("--results", type=Path, default=None,
                        help=f"file to write (default {RESULTS_PATH.relative_to(_ROOT)}; with --quick "
                             "out/bench-quick/RESULTS.md)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=None,
                        help="run only these and update their sections, keeping the rest of the file")
    parser.add_argument("--data-dir", default=None, help="TFDS data dir for clump_scout (default: TFDS's)")
    args = parser.parse_args(argv)
    results = args.results or (_ROOT / "out" / "bench-quick" / "RESULTS.md" if args.quick else RESULTS_PATH)
    results = results.resolve()
    results.parent.mkdir(parents=True, exist_ok=True)
    names = args.only or list(BENCHMARKS)
    previous = _previous_rows(results) if args.only else {}
    if args.only is None:
        results.unlink(missing_ok=True)  # every section below comes from this run
    rows = {name: previous.get(name) or [name, "", "pending", ""] for name in BENCHMARKS
            if name in names or name in previous}

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
           "PYTHONUNBUFFERED": "1"}
    load = [os.getloadavg()[0]]
    _write_run_section(results, argv, rows, load, "Running.")
    start_all, failed = time.perf_counter(), []
    for name in names:
        print(f"== {name} ==", flush=True)
        start = time.perf_counter()
        completed = subprocess.run(
            _command(name, quick=args.quick, results=results, data_dir=args.data_dir), cwd=_ROOT, env=env
        )
        status = "ok" if completed.returncode == 0 else f"FAILED (exit {completed.returncode})"
        finished = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
        rows[name] = [name, f"{time.perf_counter() - start:.0f}", status, finished]
        if completed.returncode != 0:
            failed.append(name)
        print(f"== {name}: {status} in {rows[name][1]} s ==", flush=True)
    load.append(os.getloadavg()[0])
    total_minutes = (time.perf_counter() - start_all) / 60
    note = f"Total {total_minutes:.1f} minutes for {', '.join(names)}." + (
        f" Rows of {', '.join(sorted(set(rows) - set(names)))} are from an earlier run." if set(rows) - set(names) else ""
    ) + (f" FAILED: {', '.join(failed)}." if failed else "")
    _write_run_section(results, argv, rows, load, note)
    print(f"{note} Results in {results}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
