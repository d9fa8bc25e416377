"""Test-wide set-up."""

import fcntl
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# torchvision and timm load triton's native library, which segfaults when loaded after
# TensorFlow's; importing the reference libraries first avoids that.
try:
    import timm  # noqa: F401
    import torchvision  # noqa: F401
except ImportError:
    pass

_ROOT = Path(__file__).resolve().parent
_DUMMY_CLUMPSCOUT_DIR = _ROOT / "tfds_clumpscout" / "clump_scout" / "dummy_data"
_NOTEBOOK_ENV = pytest.StashKey[pytest.MonkeyPatch]()


def _shared_tfds_dir(tmp_path_factory, *, with_sdss: bool = False) -> Path:
    """A TFDS data dir shared by every test worker and notebook kernel of the session.

    TFDS cannot build one dataset from two processes at once, so builds happen under a lock;
    `clump_scout/synthetic_small` always, the `sdss` config from the dummy files if asked.
    """
    import tensorflow_datasets as tfds

    import tfds_clumpscout  # noqa: F401

    shared = tmp_path_factory.getbasetemp().parent / "tfds_shared"
    shared.mkdir(exist_ok=True)
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        tfds.builder("clump_scout/synthetic_small", data_dir=str(shared)).download_and_prepare()
        if with_sdss:
            tfds.builder("clump_scout/sdss", data_dir=str(shared)).download_and_prepare(
                download_config=tfds.download.DownloadConfig(manual_dir=str(_DUMMY_CLUMPSCOUT_DIR))
            )
    return shared


@pytest.fixture
def global_dtype_policy():
    """Keras's `set_global_policy`; the policy the test started with comes back after it."""
    import keras

    previous = keras.mixed_precision.global_policy()
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy(previous)


@pytest.fixture(scope="session")
def synthetic_small_data_dir(tmp_path_factory):
    """A TFDS data dir holding `clump_scout/synthetic_small`, built once for all test workers."""
    return str(_shared_tfds_dir(tmp_path_factory))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Notebook kernels (nbmake) inherit this environment: quick mode, shared data, own outputs."""
    if item.path.suffix != ".ipynb":
        return
    # Hooks get no fixtures: the session's tmp_path_factory is reached through the config.
    factory = item.config._tmp_path_factory
    env = item.stash[_NOTEBOOK_ENV] = pytest.MonkeyPatch()
    env.setenv("GSFC_TF_NOTEBOOK_QUICK", "1")
    env.setenv("TFDS_DATA_DIR", str(_shared_tfds_dir(factory, with_sdss=True)))
    env.setenv("GSFC_TF_CLUMPSCOUT_DIR", str(_DUMMY_CLUMPSCOUT_DIR))
    env.setenv("GSFC_TF_NOTEBOOK_OUT", str(factory.mktemp(item.path.stem)))
    # Kernels start in notebooks/ and must import this checkout, as the tests do.
    env.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])))


def pytest_runtest_teardown(item: pytest.Item) -> None:
    if _NOTEBOOK_ENV in item.stash:
        item.stash[_NOTEBOOK_ENV].undo()
