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
