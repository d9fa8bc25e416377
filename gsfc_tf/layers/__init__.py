"""Serializable Keras layers of the Faster R-CNN detector."""

from gsfc_tf.layers.fpn import FeaturePyramid
from gsfc_tf.layers.postprocess import DetectionPostprocess
from gsfc_tf.layers.roi_align import MultiLevelRoiAlign
from gsfc_tf.layers.roi_head import RoiBoxHead
from gsfc_tf.layers.rpn import ProposalGenerator, RpnHead

__all__ = ["DetectionPostprocess", "FeaturePyramid", "MultiLevelRoiAlign", "ProposalGenerator", "RoiBoxHead", "RpnHead"]
