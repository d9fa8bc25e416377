"""The CLI hides the routine log lines of TensorFlow and its libraries, keeps its own, gives them back on request."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gsfc_tf import cli, logs
from test_detector import save_png, save_run_dir

REPO = Path(__file__).resolve().parents[1]
# What TensorFlow printed on every command before: absl-format C++ lines (E0000 … cuInit, I0000 …
# oneDNN, W0000 … PredictCost) and absl's notice that precedes them.
TENSORFLOW_LOG_LINE = re.compile(r"^[IWEF]\d{4} |All log messages before absl::InitializeLog", re.MULTILINE)
NOISE_WORDS = ("cuInit", "oneDNN", "PredictCost", "This TensorFlow binary", "cuda drivers")


def _env(**changes):
    """This checkout's environment for a `gsfc-tf` process, without the test session's TF_CPP_MIN_LOG_LEVEL."""
    env = {key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", logs.VERBOSE_ENV)}
    return {**env, "PYTHONPATH": str(REPO), **changes}


def _gsfc_tf(*args, **env_changes):
    return subprocess.run(
        [sys.executable, "-m", "gsfc_tf.cli", *args], cwd=REPO, env=_env(**env_changes),
        capture_output=True, text=True, timeout=300,
    )


def _predict_args_without_model(tmp_path):
    """A `predict` that fails (exit 2) once TensorFlow is imported: its model is missing."""
    return ["predict", "--model", str(tmp_path / "missing"), str(tmp_path / "x.png"), "--out", str(tmp_path / "c.csv")]


def test_predict_prints_its_own_lines_and_none_of_tensorflows(tmp_path):
    run_dir = save_run_dir(tmp_path / "run")
    save_png(tmp_path / "galaxy.png", np.full((400, 400, 3), 40, np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    result = _gsfc_tf(
        "predict", "--model", str(run_dir), str(tmp_path / "galaxy.png"), str(tmp_path / "broken.png"),
        "--out", str(tmp_path / "clumps.csv"),
    )
    assert result.returncode == 0, result.stderr
    assert "warning: skipping" in result.stderr and "broken.png" in result.stderr
    assert not TENSORFLOW_LOG_LINE.search(result.stderr), result.stderr
    assert not [word for word in NOISE_WORDS if word in result.stderr], result.stderr


@pytest.mark.parametrize(
    "opt_out", [{logs.VERBOSE_ENV: "1"}, {"TF_CPP_MIN_LOG_LEVEL": "0"}], ids=["GSFC_TF_VERBOSE=1", "user's level 0"]
)
def test_tensorflows_lines_come_back_on_request_beside_our_error(tmp_path, opt_out):
    result = _gsfc_tf(*_predict_args_without_model(tmp_path), **opt_out)
    assert result.returncode == 2
    # TensorFlow logs while it loads on any machine (oneDNN, CUDA, absl's notice).
    assert TENSORFLOW_LOG_LINE.search(result.stderr), result.stderr
    assert "gsfc-tf predict: error:" in result.stderr


@pytest.mark.parametrize(
    ("flags", "env", "hidden"),
    [
        (([], []), {}, True),
        ((["--verbose"], []), {}, False),
        (([], ["--verbose"]), {}, False),
        (([], []), {logs.VERBOSE_ENV: "1"}, False),
        (([], []), {logs.VERBOSE_ENV: "0"}, True),
    ],
    ids=["default", "--verbose COMMAND", "COMMAND --verbose", "GSFC_TF_VERBOSE=1", "GSFC_TF_VERBOSE=0"],
)
def test_verbose_flag_or_environment_skips_the_hiding(tmp_path, monkeypatch, flags, env, hidden):
    calls = []
    monkeypatch.setattr(logs, "hide_routine_library_logs", lambda: calls.append("hidden"))
    monkeypatch.delenv(logs.VERBOSE_ENV, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    before_command, after_command = flags
    assert cli.main([*before_command, *_predict_args_without_model(tmp_path), *after_command]) == 2
    assert calls == (["hidden"] if hidden else [])


def test_only_the_libraries_routine_python_logs_are_hidden():
    # The libraries' loggers as `gsfc-tf train` configures logging (INFO); no TensorFlow needed.
    script = textwrap.dedent("""
        import logging, warnings
        from absl import logging as absl_logging
        from gsfc_tf import cli, logs

        logs.hide_routine_library_logs()
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        absl_logging.info("Sharding callback duration: 12 microseconds")
        logging.warning("apitools not found, and bigquery client libraries are not available")
        logging.getLogger("gsfc_tf.hooks").info("step 2: validation completeness 0.5")
        logging.warning("a root warning of someone else")
        absl_logging.warning("a library warning")
        warnings.warn("a warning of ours")
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60, check=True
    )
    assert "Sharding callback" not in result.stderr and "apitools" not in result.stderr
    for kept in ("step 2: validation completeness", "a root warning of someone else", "a library warning", "of ours"):
        assert kept in result.stderr


@pytest.mark.parametrize(
    ("level", "hidden"),
    [("3", "IWE"), ("2", "IW"), ("0", "")],
)
def test_start_up_lines_are_filtered_to_tensorflows_log_level(monkeypatch, level, hidden):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", level)
    for severity in "IWEF":
        line = f"{severity}0000 00:00:1796545129.266424    4329 port.cc:153] oneDNN custom operations are on.\n"
        assert logs._is_below_tf_log_level(line.encode()) == (severity in hidden)
    notice = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    assert logs._is_below_tf_log_level(notice) == ("W" in hidden)
    # Anything else written while TensorFlow loads (a Python warning, a continuation line) is kept.
    for other in (b"/x/keras.py:12: UserWarning: something\n", b"To enable the following instructions: AVX2\n"):
        assert not logs._is_below_tf_log_level(other)
