"""gsfc-tf: giant star-forming clump detection with a Keras 3 Faster R-CNN.

Public names are imported on first use, so `import gsfc_tf` (and the CLI's start-up) stays
free of TensorFlow; the Zoobot weight converter relies on that to import torch first.
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "build_backbone": "gsfc_tf.backbones",
    "build_detector": "gsfc_tf.models",
    "train": "gsfc_tf.trainer",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gsfc_tf' has no attribute {name!r}")
