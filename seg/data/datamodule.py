"""SegmentationDataModule: any supported layout and mask encoding by config.

Layouts: ``voc`` (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/, SBD splits; see
sbd.py), ``folder`` (an image and a mask folder paired by id, or one pair per split; see
layouts.py) and ``auto`` (whichever of the two root holds, so that one config reads a dataset in
either form, as data=camvid does). Encodings: see encodings.py. Images may have any number of
bands (``in_channels``, with one mean/std each).

The datamodule picks its own samplers (the trainer runs with ``use_distributed_sampler=False``):
training through ``SeededSampler`` (order and augmentations are functions of seed and epoch,
sharded under DDP); sequential evaluation, unpadded under DDP so that each image counts exactly
once. Training uses torchdata's ``StatefulDataLoader`` so that a mid-epoch checkpoint resumes the
same batches and augmentations.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from seg.data.check import check_files, check_unique
from seg.data.dataset import SegmentationDataset
from seg.data.download import download_archive, download_sbd, download_voc
from seg.data.encodings import MaskDecoder
from seg.data.layouts import (
    VOC_LAYOUT,
    Sample,
    choose_layout,
    folder_samples,
    folder_text,
)
from seg.data.reading import mask_palette
from seg.data.sampler import eval_loader, loader_options, train_loader, world
from seg.data.sbd import check_disjoint, split_samples, uses_sbd
from seg.data.transforms import eval_transform, pad_collate, train_transform
from seg.data.voc import VOC_CLASSES, voc_colormap
from seg.errors import DatasetError, RootNotFoundError
from seg.imagenet import IMAGENET_MEAN, IMAGENET_STD


class SegmentationDataModule(pl.LightningDataModule):
    """Loaders over a dataset tree, plus class names, palette and statistics for the module."""

    def __init__(
        self,
        root: str,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        class_names: list[str] = VOC_CLASSES,
        ignore_index: int = 255,
        label_map: dict[int, int] | None = None,
        image_ext: str = ".jpg",
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        base_size: int | None = None,
        crop_size: int | list[int] = 320,
        scale_range: tuple[float, float] = (0.5, 2.0),
        hflip: bool = True,
        color_jitter: float = 0.0,
        photometric: float = 0.0,
        batch_size: int = 8,
        val_batch_size: int = 1,
        num_workers: int = 2,
        persistent_workers: bool = True,
        pin_memory: bool | None = None,
        download: bool = False,
        sbd_root: str | None = None,
        seed: int | None = None,
        max_bad_samples: int = 10,
        layout: str = "voc",
        folder: dict | None = None,
        mask_encoding: str = "index",
        reduce_zero_label: bool = False,
        palette: list[list[int]] | None = None,
        void_colours: list[list[int]] | None = None,
        in_channels: int = 3,
        source: str | None = None,
        source_dir: str | None = None,
    ) -> None:
        super().__init__()  # values checked by seg/config.py (check_data) before construction
        self.root, self.sbd_root = Path(root), sbd_root and Path(sbd_root)
        self.layout, self.folder, self.source = layout, dict(folder or {}), source
        self.source_dir, self.image_ext, self.download = source_dir, image_ext, download
        self.train_split, self.val_split, self.test_split = train_split, val_split, test_split
        self.class_names = [str(n) for n in class_names]
        self.num_classes, self.ignore_index = len(self.class_names), int(ignore_index)
        labels = {int(k): int(v) for k, v in (label_map or {}).items()}
        self.own_palette = [[int(c) for c in rgb] for rgb in palette] if palette else None
        self.decoder = MaskDecoder(self.num_classes, self.ignore_index, mask_encoding, labels,
                                   reduce_zero_label, self.own_palette, void_colours)  # fmt: skip
        self.in_channels, self.mean = int(in_channels), tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        crop = [crop_size] * 2 if isinstance(crop_size, int) else list(crop_size)
        self.augment = dict(crop_size=(int(crop[0]), int(crop[-1])), base_size=base_size,
                            scale_range=(float(scale_range[0]), float(scale_range[1])),
                            hflip=hflip, color_jitter=float(color_jitter),
                            photometric=float(photometric))  # fmt: skip
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.num_workers, self.persistent_workers = num_workers, persistent_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.seed = int(os.environ.get("PL_GLOBAL_SEED", 0)) if seed is None else seed
        self.max_bad_samples = int(max_bad_samples)
        self._samples: dict[str, list[Sample]] = {}
        self._frequencies: dict[str, list[float]] = {}
        self.datasets: dict[str, SegmentationDataset] = {}

    def prepare_data(self) -> None:
        """Download the data when data.download is true: VOC (+ SBD), or the archive at source."""
        if self.download and self.layout != "voc" and self.source:
            download_archive(self.source, self.root, self.source_dir, self.layout_text())
        elif self.download and self.layout == "voc":
            download_voc(self.root)
            if self.sbd_root and uses_sbd(self.train_split, self.val_split, self.test_split):
                download_sbd(self.sbd_root)

    def samples(self, split: str) -> list[Sample]:
        """The (cached) samples of a split name; a split listing an id twice is refused."""
        if split not in self._samples:
            self.prepare_data()
            samples = self.read_split(split)
            check_unique(samples, split)
            self._samples[split] = samples
        return self._samples[split]

    def read_split(self, split: str) -> list[Sample]:
        """Samples of a split in root's layout; a missing root says where the data comes from."""
        try:
            auto = self.layout == "auto"
            layout = choose_layout(self.root, *self.folder_dirs) if auto else self.layout
            if layout == "folder":
                return folder_samples(self.root, split, **self.folder)
            return split_samples(self.root, split, self.image_ext, self.sbd_root)
        except RootNotFoundError as err:
            if self.source is None:
                raise
            raise RootNotFoundError(
                f"{err}. This dataset comes from {self.source}; data.download=true fetches it "
                "when that is an archive"
            ) from None

    @property
    def folder_dirs(self) -> tuple[str, str]:
        """The folder layout's image and mask folders (may hold {split}; see layouts.py)."""
        return self.folder.get("image_dir", "images"), self.folder.get("mask_dir", "masks")

    def layout_text(self) -> str:
        """The folders root must hold, in words, for download messages."""
        folders = folder_text(*self.folder_dirs)
        return folders if self.layout == "folder" else f"either {folders} or {VOC_LAYOUT}"

    def dataset(self, split: str, train: bool = False) -> SegmentationDataset:
        """A dataset over split with the train (augmenting) or eval transform."""
        aug = dict(mean=self.mean, std=self.std, ignore_index=self.ignore_index, **self.augment)
        transform = train_transform(**aug) if train else eval_transform(self.mean, self.std)
        samples = self.samples(split)
        check_files(samples)
        return SegmentationDataset(
            samples, self.num_classes, self.ignore_index, transform=transform,
            decoder=self.decoder, in_channels=self.in_channels, skip_unreadable=train,
        )  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.datasets["train"] = self.dataset(self.train_split, train=True)
            self.refuse_overlap(self.val_split)
        if stage in ("fit", "validate", None):
            self.datasets["val"] = self.dataset(self.val_split)
        # The test split is read only to test: a copy without one (CamVid in VOC layout) trains.
        if stage in ("test", None) and self.test_split is not None:
            self.refuse_overlap(self.test_split)
            self.datasets["test"] = self.dataset(self.test_split)

    def refuse_overlap(self, split: str) -> None:
        """Refuse an evaluation split that shares ids with the train split."""
        names = f"train_split={self.train_split!r} and {split!r}"
        check_disjoint(self.samples(self.train_split), self.samples(split), names)

    def loader_options(self) -> dict:
        workers, persistent = self.num_workers, self.persistent_workers
        return loader_options(workers, persistent, self.pin_memory, self.seed)

    def train_dataloader(self) -> StatefulDataLoader:
        dataset, (size, rank) = self.datasets["train"], world()
        if len(dataset) < self.batch_size * size:
            raise DatasetError(
                f"train_split={self.train_split!r} has {len(dataset)} images, fewer than one "
                f"batch (batch_size={self.batch_size} x {size} processes); lower data.batch_size"
            )
        options = self.loader_options()
        return train_loader(dataset, self.batch_size, self.seed, (size, rank), **options)

    def eval_dataloader(self, name: str) -> DataLoader:
        """Sequential, at native size; padded collate for batches of different sizes."""
        if name not in self.datasets:
            raise DatasetError(f"no {name} split: set data.{name}_split (e.g. 'val')")
        collate = partial(pad_collate, ignore_index=self.ignore_index)
        options = self.loader_options()
        return eval_loader(self.datasets[name], self.val_batch_size, collate, world(), **options)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test")

    def class_frequencies(self, split: str | None = None) -> list[float]:
        """Pixel fraction per class over a split (default: the train split), ignore excluded."""
        split = split or self.train_split
        if split not in self._frequencies:
            dataset = self.dataset(split)
            counts = np.zeros(256, np.int64)
            with ThreadPoolExecutor(max(1, self.num_workers)) as pool:  # decoding frees the GIL
                for mask in pool.map(dataset.load_mask, range(len(dataset))):
                    counts += np.bincount(mask.ravel(), minlength=256)
            total = max(int(counts[: self.num_classes].sum()), 1)
            self._frequencies[split] = [float(c / total) for c in counts[: self.num_classes]]
        return self._frequencies[split]

    @property
    def palette(self) -> list[list[int]]:
        """RGB per class: data.palette, else the masks' own PNG palette, else the VOC colour map.

        The files of the train split are checked first, so a missing or broken first mask is
        reported as such rather than as a palette problem.
        """
        colours = voc_colormap()
        if self.own_palette:
            return self.own_palette
        samples = self.samples(self.train_split)
        check_files(samples[:1])
        own = mask_palette(samples[0].mask) or []
        return (own + colours[len(own) :])[: self.num_classes]
