"""Hides the routine log lines of TensorFlow and its libraries, which users read as failures.

TensorFlow logs, on every start and run, conditions it recovers from: `E0000 … failed call to
cuInit` (no CUDA driver), `I0000 … oneDNN custom operations are on`, `W0000 … Error in
PredictCost()` (no cost model for CropAndResize), `E0000 … oneDNN supports DT_BOOL only …`;
Apache Beam warns `apitools not found` (BigQuery, which gsfc-tf never uses) and TensorFlow's
checkpoint writer logs `Sharding callback duration`. `hide_routine_library_logs` silences them
for the `gsfc-tf` commands; real failures still raise, and gsfc-tf's own warnings still print.
`gsfc-tf --verbose` or `GSFC_TF_VERBOSE=1` leaves every library at its defaults, and a
`TF_CPP_MIN_LOG_LEVEL` set by the user is kept.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator

__all__ = ["VERBOSE_ENV", "hide_routine_library_logs", "verbose_requested"]

VERBOSE_ENV = "GSFC_TF_VERBOSE"
_TF_LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
# TensorFlow's C++ log level: 3 hides INFO, WARNING and ERROR; the ERROR lines it prints on a
# working run (cuInit, oneDNN fallbacks) are conditions it recovers from, and real failures raise.
_QUIET_TF_LOG_LEVEL = "3"
# absl's log line: severity, MMDD, time, thread id, file:line], then the message.
_CPP_LOG_LINE = re.compile(rb"([IWEF])\d{4} [\d:.]+ +\d+ [^\]\s]+:\d+\] ")
_CPP_SEVERITIES = b"IWEF"  # TF_CPP_MIN_LOG_LEVEL counts them from INFO = 0
# absl's notice before its first lines of a process, at WARNING severity.
_ABSL_PRE_INIT_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_ABSL_WARNING_SEVERITY = 1


def verbose_requested() -> bool:
    """Whether `GSFC_TF_VERBOSE` (any value but empty or 0) asks for the libraries' own logs."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def hide_routine_library_logs() -> None:
    """Lowers what TensorFlow, absl and Apache Beam log to what a user needs; call before TensorFlow is imported.

    TensorFlow reads `TF_CPP_MIN_LOG_LEVEL` once, when it loads; the lines its C++ libraries log
    while loading ignore it and go straight to file descriptor 2, so the import of `tensorflow`,
    wherever a command first makes it, is filtered to the same level. Calling again is harmless.
    """
    os.environ.setdefault(_TF_LOG_LEVEL_ENV, _QUIET_TF_LOG_LEVEL)
    if _FILTERED_TENSORFLOW_IMPORT not in sys.meta_path:
        sys.meta_path.insert(0, _FILTERED_TENSORFLOW_IMPORT)
    # TensorFlow's checkpoint writer and TFDS log routine INFO lines through absl, which
    # `gsfc-tf train` would print beside its own INFO lines.
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger().addFilter(_BEAM_APITOOLS_WARNING)


def _tf_log_level() -> int:
    """`TF_CPP_MIN_LOG_LEVEL` as TensorFlow reads it: a number, 0 when unset or not one."""
    value = os.environ.get(_TF_LOG_LEVEL_ENV, "")
    return int(value) if value.isdigit() else 0


def _is_below_tf_log_level(line: bytes) -> bool:
    """Whether `line` is an absl log line (or absl's pre-start notice) of a severity TensorFlow is told to hide."""
    if line.startswith(_ABSL_PRE_INIT_NOTICE):
        severity = _ABSL_WARNING_SEVERITY
    elif match := _CPP_LOG_LINE.match(line):
        severity = _CPP_SEVERITIES.index(match[1])
    else:
        return False
    return severity < _tf_log_level()


@contextlib.contextmanager
def _stderr_filtered(is_hidden: Callable[[bytes], bool]) -> Iterator[None]:
    """Captures file descriptor 2 (where C++ writes) during the block, then writes back the lines not `is_hidden`."""
    sys.stderr.flush()
    original = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(original, 2)
            os.close(original)
            captured.seek(0)
            with open(2, "wb", closefd=False) as stderr:
                stderr.writelines(line for line in captured.read().splitlines(keepends=True) if not is_hidden(line))


class _FilteredTensorFlowLoader(importlib.abc.Loader):
    """Runs the `tensorflow` package's loader with file descriptor 2 filtered to TensorFlow's log level."""

    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        # The package keeps its own loader, as if imported the usual way.
        module.__loader__ = module.__spec__.loader = self._loader
        with _stderr_filtered(_is_below_tf_log_level):
            self._loader.exec_module(module)


class _FilteredTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` where the usual path finder does and gives it the filtering loader."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None:
            spec.loader = _FilteredTensorFlowLoader(spec.loader)
        return spec


class _BeamApitoolsWarningFilter(logging.Filter):
    """Drops Apache Beam's root-logger warning that its optional BigQuery client (apitools) is missing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("apitools not found")


_FILTERED_TENSORFLOW_IMPORT = _FilteredTensorFlowImport()
_BEAM_APITOOLS_WARNING = _BeamApitoolsWarningFilter()
