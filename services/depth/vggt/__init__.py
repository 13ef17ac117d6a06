"""VGGT (facebookresearch/vggt) written here: ``model`` (network, config read off a checkpoint), ``layers``,
``backbone`` (DINOv2), ``heads`` (camera, DPT). Loading and inference: ``objvid.depth.geometry``; tiny
random-weight networks for tests live in the testing subpackage (``geometry_model``)."""

from .heads import pose_to_camera
from .model import VGGT, VGGTConfig

__all__ = ["VGGT", "VGGTConfig", "pose_to_camera"]
