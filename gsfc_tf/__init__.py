"""gsfc-tf: giant star-forming clump detection with a Keras 3 Faster R-CNN."""

__version__ = "0.1.0"
