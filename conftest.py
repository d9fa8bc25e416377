"""Test-wide set-up."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# torchvision and timm load triton's native library, which segfaults when loaded after
# TensorFlow's; importing the reference libraries first avoids that.
try:
    import timm  # noqa: F401
    import torchvision  # noqa: F401
except ImportError:
    pass

import fcntl  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_small_data_dir(tmp_path_factory):
    """A TFDS data dir holding `clump_scout/synthetic_small`, built once for all test workers."""
    import tensorflow_datasets as tfds

    import tfds_clumpscout  # noqa: F401

    shared = tmp_path_factory.getbasetemp().parent / "tfds_synthetic_small"
    shared.mkdir(exist_ok=True)
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        tfds.builder("clump_scout/synthetic_small", data_dir=str(shared)).download_and_prepare()
    return str(shared)
