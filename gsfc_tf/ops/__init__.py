"""Pure TensorFlow detection ops on absolute-pixel `yxyx` float32 boxes."""

from gsfc_tf.ops.anchors import anchor_boxes
from gsfc_tf.ops.boxes import box_containment, box_iou, clip_boxes, decode_boxes, encode_boxes, from_window, to_window
from gsfc_tf.ops.losses import roi_losses, rpn_losses
from gsfc_tf.ops.matching import match_boxes
from gsfc_tf.ops.roi_align import assign_fpn_levels, multilevel_roi_align, roi_align
from gsfc_tf.ops.sampling import sample_balanced

__all__ = [
    "anchor_boxes",
    "assign_fpn_levels",
    "box_containment",
    "box_iou",
    "clip_boxes",
    "decode_boxes",
    "encode_boxes",
    "from_window",
    "match_boxes",
    "multilevel_roi_align",
    "roi_align",
    "roi_losses",
    "rpn_losses",
    "sample_balanced",
    "to_window",
]
