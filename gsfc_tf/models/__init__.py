"""Detection models that compose `gsfc_tf.layers`."""

from gsfc_tf.models.faster_rcnn import POSTPROCESS_FIELDS, FasterRCNN, build_detector, with_postprocess

__all__ = ["POSTPROCESS_FIELDS", "FasterRCNN", "build_detector", "with_postprocess"]
