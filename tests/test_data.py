"""seg.data: sample contract, augmentation, splits, SBD/trainaug, errors, loaders, configs."""

from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import pytorch_lightning as pl
import scipy.io
import torch
import torchvision.datasets.sbd
import torchvision.datasets.voc
from conftest import REPO, SHIPPED_VOC, shared_data, write_voc_tree
from PIL import Image

import seg.data
from seg.data import VOC_CLASSES, SegmentationDataModule
from seg.data.download import VOC_URL, download_sbd, download_voc
from seg.data.sbd import split_samples
from seg.errors import (
    ColourMaskError,
    DatasetError,
    DownloadError,
    ImageReadError,
    LabelRangeError,
    MaskSizeError,
    MissingFileError,
    RootNotFoundError,
    SplitError,
    SplitOverlapError,
)

MEAN = torch.tensor((0.485, 0.456, 0.406)).view(3, 1, 1)
STD = torch.tensor((0.229, 0.224, 0.225)).view(3, 1, 1)


def datamodule(root, **kwargs) -> SegmentationDataModule:
    kwargs = {"num_workers": 0, "batch_size": 2, "crop_size": 32, **kwargs}
    return SegmentationDataModule(str(root), **kwargs)


def raw_mask(root: Path, image_id: str) -> np.ndarray:
    return np.array(Image.open(root / "SegmentationClass" / f"{image_id}.png"))


def check_sample(sample: dict, num_classes: int = 21) -> None:
    image, mask = sample["image"], sample["mask"]
    assert image.dtype == torch.float32 and image.ndim == 3 and image.shape[0] == 3
    assert mask.dtype == torch.int64 and mask.shape == image.shape[1:]
    values = set(mask.unique().tolist())
    assert values <= set(range(num_classes)) | {255}


@pytest.mark.parametrize("source", ["generated", "voc_mini"])
def test_sample_contract_and_native_eval(source, voc_root):
    root = voc_root if source == "generated" else shared_data("voc_mini") / "VOC2012"
    dm = datamodule(root, crop_size=[40, 56])
    dm.setup("fit")
    for i in range(len(dm.datasets["train"])):
        sample = dm.datasets["train"][i]
        check_sample(sample)
        assert sample["image"].shape == (3, 40, 56)
    sample = dm.datasets["val"][0]
    check_sample(sample)
    raw = raw_mask(root, sample["id"])  # eval: native size, mask untouched
    assert np.array_equal(sample["mask"].numpy(), raw)


def test_crops_are_padded_with_ignore_and_zero_image(voc_root):
    dm = datamodule(voc_root, crop_size=[80, 96], scale_range=(1.0, 1.0), hflip=False)
    dm.setup("fit")
    sample = dm.datasets["train"][0]
    image, mask = sample["image"], sample["mask"]
    # 48x64 images placed top-left in an 80x96 crop: the rest is padding
    assert (mask[48:] == 255).all() and (mask[:, 64:] == 255).all()
    padded = (-MEAN / STD).expand(3, 80, 96)
    torch.testing.assert_close(image[:, 48:], padded[:, 48:])
    assert np.array_equal(mask[:48, :64].numpy(), raw_mask(voc_root, sample["id"]))


@pytest.mark.parametrize("base_size", [None, 40])
def test_rescaled_masks_hold_only_their_own_values(voc_root, base_size):
    dm = datamodule(voc_root, crop_size=24, scale_range=(0.37, 1.7), base_size=base_size)
    dm.setup("fit")
    dataset = dm.datasets["train"]
    for i in range(len(dataset)):
        mask = dataset[i]["mask"]
        allowed = set(np.unique(raw_mask(voc_root, dataset.samples[i].id)).tolist()) | {255}
        assert set(mask.unique().tolist()) <= allowed  # nearest neighbour: no blended labels


def test_eval_batches_pad_images_with_zero_and_masks_with_ignore(tmp_path):
    root = write_voc_tree(tmp_path / "a", {"val": 2}, size=(40, 50))
    write_voc_tree(tmp_path / "b", {"train": 2}, size=(30, 60), seed=1)
    for sub in ("JPEGImages", "SegmentationClass"):  # one val image of another size
        for f in (tmp_path / "b" / sub).iterdir():
            f.rename(root / sub / f.name)
    (root / "ImageSets/Segmentation/val.txt").write_text("val_0000\ntrain_0000\n")
    dm = datamodule(root, val_batch_size=2)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (2, 3, 40, 60) and batch["mask"].shape == (2, 40, 60)
    assert batch["id"] == ["val_0000", "train_0000"]
    assert (batch["mask"][0, :, 50:] == 255).all() and (batch["image"][0, :, :, 50:] == 0).all()
    assert (batch["mask"][1, 30:] == 255).all() and (batch["image"][1, :, 30:] == 0).all()
    assert np.array_equal(batch["mask"][1, :30].numpy(), raw_mask(root, "train_0000"))


def test_grey_masks_and_label_map(voc_root):
    # CamVid-style single-channel masks: void stored as 11, class 3 merged into class 1
    path = voc_root / "SegmentationClass" / "val_0000.png"
    mask = np.array(Image.open(path))
    mask[(mask != 0) & (mask != 255)] = 3
    mask[:4] = 11
    Image.fromarray(mask, mode="L").save(path)
    dm = datamodule(voc_root, class_names=VOC_CLASSES[:11], label_map={11: 255, 3: 1})
    dm.setup("validate")
    out = dm.datasets["val"][0]["mask"].numpy()
    expected = np.where(mask == 11, 255, np.where(mask == 3, 1, mask))
    assert np.array_equal(out, expected) and set(np.unique(out)) == {0, 1, 255}
    assert dm.palette == [c for c in seg.data.voc_colormap()[:11]]  # no PNG palette: VOC map


def test_class_frequencies_and_palette(voc_root):
    dm = datamodule(voc_root)
    masks = [raw_mask(voc_root, f"train_{i:04d}") for i in range(6)]
    counts = np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=256)[:21]
    assert dm.class_frequencies() == pytest.approx((counts / counts.sum()).tolist())
    assert dm.palette[:3] == [[0, 0, 0], [128, 0, 0], [0, 128, 0]] and len(dm.palette) == 21


def test_camvid_frequencies_match_the_published_table():
    dm = datamodule(shared_data("camvid"), class_names=[str(i) for i in range(11)])
    freqs = dm.class_frequencies()
    # ../shared/data/README.md: road 31.7 %, building 23.3 %, sky 16.9 % with void (4.0 %) counted
    for index, share in [(3, 0.317), (1, 0.233), (0, 0.169)]:
        assert freqs[index] * 0.960 == pytest.approx(share, abs=0.002)


def corrupt(root: Path, case: str) -> None:
    """Break the generated tree (6 train, 3 val) in one way."""
    seg_dir, jpg_dir = root / "SegmentationClass", root / "JPEGImages"
    if case == "missing image":
        (jpg_dir / "train_0002.jpg").unlink()
    elif case == "truncated image":
        data = (jpg_dir / "train_0000.jpg").read_bytes()
        (jpg_dir / "train_0000.jpg").write_bytes(data[: len(data) // 2])
    elif case == "size mismatch":
        Image.open(seg_dir / "train_0000.png").crop((0, 0, 60, 40)).save(seg_dir / "train_0000.png")
    elif case == "colour mask":
        Image.open(seg_dir / "train_0000.png").convert("RGB").save(seg_dir / "train_0000.png")
    elif case == "label out of range":
        mask = Image.open(seg_dir / "train_0000.png")
        mask.putpixel((0, 0), 30)
        mask.save(seg_dir / "train_0000.png")
    elif case == "empty split":
        (root / "ImageSets/Segmentation/train.txt").write_text("\n")
    elif case == "overlap":
        (root / "ImageSets/Segmentation/val.txt").write_text("val_0000\ntrain_0001\ntrain_0003\n")


BAD_INPUTS = {
    "missing image": (MissingFileError, "train_0002.jpg"),
    "truncated image": (ImageReadError, "train_0000.jpg"),
    "size mismatch": (MaskSizeError, "train_0000.png"),
    "colour mask": (ColourMaskError, "train_0000.png"),
    "label out of range": (LabelRangeError, "[30]"),
    "empty split": (SplitError, "train.txt is empty"),
    "overlap": (SplitOverlapError, "train_0001, train_0003"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_each_bad_input_raises_its_error_naming_the_file(voc_root, case):
    corrupt(voc_root, case)
    error, text = BAD_INPUTS[case]
    dm = datamodule(voc_root)
    with pytest.raises(error, match=text) as info:
        dm.setup("fit")
        dm.dataset(dm.train_split)[0]  # an evaluation read
    assert isinstance(info.value, DatasetError)
    if case in ("missing image", "empty split", "overlap"):
        return  # refused when the split is read
    sample = dm.datasets["train"][0]  # training replaces it by the next readable sample
    assert sample["id"] != "train_0000" and text.strip("[]") in sample["skipped"]


def test_missing_root_and_split_name_the_choices(tmp_path, voc_root):
    with pytest.raises(RootNotFoundError, match="JPEGImages/, SegmentationClass/"):
        datamodule(tmp_path / "nowhere").setup("fit")
    with pytest.raises(SplitError, match=r"\['train', 'val', 'trainaug', 'sbd_train'"):
        datamodule(voc_root, val_split="test").setup("fit")
    with pytest.raises(DatasetError, match="sbd_root"):
        datamodule(voc_root, train_split="trainaug").setup("fit")
    with pytest.raises(DatasetError, match="label_map entry 7: 21"):
        datamodule(voc_root, label_map={40: 2, 7: 21})


def write_sbd(root: Path, splits: dict[str, list[str]], size=(20, 30)) -> Path:
    """A tiny SBD tree: img/<id>.jpg, cls/<id>.mat (GTcls.Segmentation) and split files."""
    (root / "img").mkdir(parents=True)
    (root / "cls").mkdir()
    for k, (split, ids) in enumerate(splits.items()):
        for i, image_id in enumerate(ids):
            mask = np.full(size, 2 * k + i % 2 + 1, np.uint8)  # classes 1..4
            mask[0] = 0
            Image.fromarray(np.zeros((*size, 3), np.uint8)).save(root / "img" / f"{image_id}.jpg")
            scipy.io.savemat(root / "cls" / f"{image_id}.mat", {"GTcls": {"Segmentation": mask}})
        (root / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


@pytest.fixture
def voc_and_sbd(voc_root: Path) -> tuple[Path, Path]:
    """VOC train_0000..5 / val_0000..2; SBD shares a VOC train id and a VOC val id."""
    sbd = write_sbd(
        voc_root.parent / "SBD",
        {"train": ["train_0001", "val_0002", "sbd_a"], "val": ["sbd_b", "sbd_c"]},
    )
    return voc_root, sbd


def test_trainaug_merges_voc_and_sbd_without_val_ids(voc_and_sbd):
    voc, sbd = voc_and_sbd
    samples = split_samples(voc, "trainaug", sbd_root=sbd)
    voc_train = [f"train_{i:04d}" for i in range(6)]
    assert [s.id for s in samples] == sorted(voc_train + ["sbd_a", "sbd_b", "sbd_c"])
    by_id = {s.id: s for s in samples}
    assert by_id["train_0001"].mask.suffix == ".png"  # VOC's own mask wins
    assert by_id["sbd_b"].mask == sbd / "cls" / "sbd_b.mat"
    dm = datamodule(voc, train_split="trainaug", sbd_root=str(sbd))
    dm.setup("fit")  # disjoint from VOC val by construction
    dataset = dm.datasets["train"]
    mask = dataset.load_mask([s.id for s in dataset.samples].index("sbd_c"))
    assert mask.shape == (20, 30) and (mask[0] == 0).all() and (mask[1:] == 4).all()
    check_sample(dataset[[s.id for s in dataset.samples].index("sbd_a")])


def test_sbd_train_with_an_id_list_refuses_overlap(voc_and_sbd, tmp_path):
    voc, sbd = voc_and_sbd
    with pytest.raises(SplitOverlapError, match=r"share 1 ids \(first: val_0002\)"):
        datamodule(voc, train_split="sbd_train", sbd_root=str(sbd)).setup("fit")
    ids = tmp_path / "seg11valid_like.txt"  # a .txt id list, read against root
    ids.write_text("val_0000\nval_0001\n")
    dm = datamodule(voc, train_split="sbd_train", val_split=str(ids), sbd_root=str(sbd))
    dm.setup("fit")
    assert [s.id for s in dm.datasets["val"].samples] == ["val_0000", "val_0001"]
    assert len(dm.datasets["train"]) == 3


def test_offline_download_fails_with_url_layout_and_what_to_do(tmp_path, monkeypatch):
    def offline(url, *args, **kwargs):
        raise URLError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets.voc, "download_and_extract_archive", offline)
    monkeypatch.setattr(torchvision.datasets.sbd, "download_and_extract_archive", offline)
    root = tmp_path / "VOCdevkit" / "VOC2012"
    with pytest.raises(DownloadError) as info:
        datamodule(root, download=True).setup("fit")
    message = str(info.value)
    for part in (VOC_URL, "network is unreachable", "SegmentationClass/<id>.png", "data.root"):
        assert part in message
    with pytest.raises(DownloadError, match="benchmark.tgz.*cls/<id>.mat.*data.sbd_root"):
        download_sbd(tmp_path / "SBD")
    with pytest.raises(DownloadError, match="does not end in VOCdevkit/VOC2012"):
        download_voc(tmp_path / "camvid")
    download_voc(SHIPPED_VOC)  # present: nothing to fetch


def first_batch(root: Path, seed: int) -> dict:
    pl.seed_everything(seed, workers=True)
    dm = datamodule(root, num_workers=1, persistent_workers=False, color_jitter=0.3)
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


def test_same_seed_gives_the_same_first_batch(voc_root):
    a, b, c = first_batch(voc_root, 3), first_batch(voc_root, 3), first_batch(voc_root, 4)
    assert a["id"] == b["id"]
    torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
    assert torch.equal(a["mask"], b["mask"])
    assert a["id"] != c["id"] or not torch.equal(a["image"], c["image"])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_stateful_loader_resumes_mid_epoch_with_the_same_augmentations(
    voc_root, num_workers, tmp_path
):
    pl.seed_everything(0, workers=True)
    dm = datamodule(voc_root, num_workers=num_workers, batch_size=1, color_jitter=0.3)
    dm.setup("fit")
    loader = dm.train_dataloader()
    batches = iter(loader)
    next(batches), next(batches)
    torch.save(loader.state_dict(), tmp_path / "loader.pt")  # as in a Lightning checkpoint
    state = torch.load(tmp_path / "loader.pt", weights_only=True)
    expected = [next(batches) for _ in range(3)]
    resumed = dm.train_dataloader()
    resumed.load_state_dict(state)
    batches = [batch for _, batch in zip(range(3), resumed, strict=False)]
    assert len(batches) == 3
    for want, got in zip(expected, batches, strict=True):
        assert want["id"] == got["id"] and torch.equal(want["image"], got["image"])
        assert torch.equal(want["mask"], got["mask"])


def test_distributed_samplers_shuffle_train_and_split_eval_without_repeats(voc_root, monkeypatch):
    dm = datamodule(voc_root, batch_size=1)
    dm.setup("fit")
    seen = []
    for rank in range(2):
        monkeypatch.setattr(seg.data.datamodule, "world", lambda rank=rank: (2, rank))
        train = dm.train_dataloader()
        assert isinstance(train.sampler, torch.utils.data.DistributedSampler)
        assert train.sampler.shuffle and len(train) == 3  # 6 images over 2 ranks
        seen += [i for batch in dm.val_dataloader() for i in batch["id"]]
    assert sorted(seen) == ["val_0000", "val_0001", "val_0002"]  # 3 over 2 ranks, none twice


class ThreadReport(torch.utils.data.Dataset):
    """What a worker sees after worker_init."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> tuple[int, int]:
        import cv2

        return cv2.getNumThreads(), torch.get_num_threads()


def test_worker_init_disables_opencv_and_torch_threads():
    loader = torch.utils.data.DataLoader(
        ThreadReport(), batch_size=None, num_workers=1, worker_init_fn=seg.data.worker_init
    )
    # cv2.setNumThreads(0) runs OpenCV sequentially: it reports 1 thread (2 outside workers)
    assert [tuple(x) for x in loader] == [(1, 1), (1, 1)]


def test_batches_do_not_depend_on_the_number_of_workers(voc_root):
    """Order and augmentation are functions of (seed, epoch, index), not of worker processes."""
    epochs = {}
    for workers in (0, 2):
        dm = datamodule(voc_root, num_workers=workers, batch_size=2, color_jitter=0.3)
        dm.setup("fit")
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(1)
        epochs[workers] = list(loader)
    assert len(epochs[0]) == 3
    for a, b in zip(epochs[0], epochs[2], strict=True):
        assert a["id"] == b["id"] and torch.equal(a["image"], b["image"])
        assert torch.equal(a["mask"], b["mask"])


def test_each_epoch_has_its_own_order_and_augmentation(voc_root):
    dm = datamodule(voc_root, num_workers=0, batch_size=6)
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    first = next(iter(loader))
    loader.sampler.set_epoch(1)
    second = next(iter(loader))
    assert first["id"] != second["id"] or not torch.equal(first["image"], second["image"])


def test_batch_larger_than_the_split_is_refused(voc_root):
    dm = datamodule(voc_root, batch_size=7)
    dm.setup("fit")
    with pytest.raises(DatasetError, match="batch_size=7"):
        dm.train_dataloader()


def compose_data(name: str, monkeypatch, overrides: list[str] = ()):
    from hydra import compose, initialize_config_dir

    monkeypatch.setenv("SEG_ROOT", str(REPO))
    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        return compose(overrides=[f"+data={name}", "+paths=default", *overrides])


@pytest.mark.parametrize("name", ["voc", "voc_aug", "voc_seg11valid", "camvid"])
def test_every_data_config_instantiates(name, monkeypatch):
    from hydra.utils import instantiate

    dm = instantiate(compose_data(name, monkeypatch).data)
    assert isinstance(dm, SegmentationDataModule) and dm.ignore_index == 255
    assert dm.num_classes == (11 if name == "camvid" else 21)
    if name == "voc_seg11valid":
        assert dm.val_split == str(REPO / "data/voc_splits/seg11valid.txt")
    if name == "voc":  # the default points at the shipped sample
        assert dm.root == SHIPPED_VOC
        dm.setup("fit")
        assert (len(dm.datasets["train"]), len(dm.datasets["val"])) == (10, 4)


def test_camvid_config_loads_367_train_and_101_val(monkeypatch):
    from hydra.utils import instantiate

    root = shared_data("camvid")
    cfg = compose_data("camvid", monkeypatch, [f"data.root={root}", "data.num_workers=0"])
    dm = instantiate(cfg.data)
    dm.setup("fit")
    assert (len(dm.datasets["train"]), len(dm.datasets["val"])) == (367, 101)
    assert dm.class_names == (root / "class_names.txt").read_text().split()
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 352, 480)  # data.batch_size from voc.yaml
    check_sample(dm.datasets["val"][0], num_classes=11)
    assert dm.datasets["val"][0]["mask"].shape == (360, 480)
