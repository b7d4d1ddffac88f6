"""Segmentation data: layouts, mask encodings, reading, transforms and the datamodule.

This package only re-exports; each concern has its own module (see their docstrings):
reading.py (files -> arrays), encodings.py (mask values -> train ids), layouts.py and sbd.py
(which files form a split), dataset.py, transforms.py, sampler.py (order, seeds, loaders and
their workers), check.py (data health: a split's ids and files, then during a run) and
datamodule.py.
"""

from seg.data.check import SkippedSamples
from seg.data.datamodule import SegmentationDataModule
from seg.data.dataset import SegmentationDataset
from seg.data.sampler import worker_init, world
from seg.data.voc import VOC_CLASSES, voc_colormap
from seg.errors import (
    ChannelError,
    ColourMaskError,
    DatasetError,
    DownloadError,
    DuplicateIdError,
    ImageReadError,
    LabelRangeError,
    LayoutError,
    MaskSizeError,
    MissingFileError,
    RootNotFoundError,
    SplitError,
    SplitOverlapError,
    UnknownColourError,
)

# The names the VOC configs and existing callers use for the same classes.

__all__ = [
    "VOC_CLASSES",
    "ChannelError",
    "ColourMaskError",
    "DatasetError",
    "DownloadError",
    "DuplicateIdError",
    "ImageReadError",
    "LabelRangeError",
    "LayoutError",
    "MaskSizeError",
    "MissingFileError",
    "RootNotFoundError",
    "SegmentationDataModule",
    "SkippedSamples",
    "SegmentationDataset",
    "SplitError",
    "SplitOverlapError",
    "UnknownColourError",
    "voc_colormap",
    "worker_init",
    "world",
]
