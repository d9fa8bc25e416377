"""Detection models that compose `gsfc_tf.layers`."""

from gsfc_tf.models.faster_rcnn import FasterRCNN, build_detector

__all__ = ["FasterRCNN", "build_detector"]
