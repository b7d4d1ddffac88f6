"""Data details whose mistakes keep every shape right, each against a known answer.

The Cityscapes label table against cityscapesScripts' own, the doctor's band statistics on
non-square images, ids that keep their sub-folder, the band order of RGBA images, ADE20K's
reduce_zero_label at 255, and the factors of the random scale augmentation.
"""

from pathlib import Path

import albumentations as A
import numpy as np
import pytest
from conftest import compose
from hydra.utils import instantiate
from PIL import Image

from seg.data.encodings import MaskDecoder, label_lut
from seg.data.layouts import folder_samples, index_files
from seg.data.reading import read_image
from seg.data.transforms import random_scale
from seg.doctor.cli import diagnose, format_report
from seg.errors import DuplicateIdError
from seg.formats import IMAGE_TYPES

# cityscapesScripts helpers/labels.py: (labelId, name, trainId, colour); 255 is not evaluated.
CITYSCAPES = [
    (0, "unlabeled", 255, (0, 0, 0)),
    (1, "ego vehicle", 255, (0, 0, 0)),
    (2, "rectification border", 255, (0, 0, 0)),
    (3, "out of roi", 255, (0, 0, 0)),
    (4, "static", 255, (0, 0, 0)),
    (5, "dynamic", 255, (111, 74, 0)),
    (6, "ground", 255, (81, 0, 81)),
    (7, "road", 0, (128, 64, 128)),
    (8, "sidewalk", 1, (244, 35, 232)),
    (9, "parking", 255, (250, 170, 160)),
    (10, "rail track", 255, (230, 150, 140)),
    (11, "building", 2, (70, 70, 70)),
    (12, "wall", 3, (102, 102, 156)),
    (13, "fence", 4, (190, 153, 153)),
    (14, "guard rail", 255, (180, 165, 180)),
    (15, "bridge", 255, (150, 100, 100)),
    (16, "tunnel", 255, (150, 120, 90)),
    (17, "pole", 5, (153, 153, 153)),
    (18, "polegroup", 255, (153, 153, 153)),
    (19, "traffic light", 6, (250, 170, 30)),
    (20, "traffic sign", 7, (220, 220, 0)),
    (21, "vegetation", 8, (107, 142, 35)),
    (22, "terrain", 9, (152, 251, 152)),
    (23, "sky", 10, (70, 130, 180)),
    (24, "person", 11, (220, 20, 60)),
    (25, "rider", 12, (255, 0, 0)),
    (26, "car", 13, (0, 0, 142)),
    (27, "truck", 14, (0, 0, 70)),
    (28, "bus", 15, (0, 60, 100)),
    (29, "caravan", 255, (0, 0, 90)),
    (30, "trailer", 255, (0, 0, 110)),
    (31, "train", 16, (0, 80, 100)),
    (32, "motorcycle", 17, (0, 0, 230)),
    (33, "bicycle", 18, (119, 11, 32)),
]


def test_cityscapes_config_matches_the_official_label_table(tmp_path):
    cfg = compose("train", ["data=cityscapes"], tmp_path)
    dm = instantiate(cfg.data)  # reads no files
    label_ids = np.arange(34, dtype=np.uint8)[None]  # one pixel of every labelId
    train_ids = dm.decoder(label_ids, "aachen_000000_000019_gtFine_labelIds.png")[0]
    evaluated = [(i, name, t, colour) for i, name, t, colour in CITYSCAPES if t != 255]
    assert dm.num_classes == len(evaluated) == 19
    for label_id, name, train_id, colour in CITYSCAPES:
        assert train_ids[label_id] == train_id, name
        if train_id != 255:
            assert dm.class_names[train_id] == name
            assert tuple(dm.palette[train_id]) == colour, name


def write_png_tree(root: Path, images: dict[str, np.ndarray]) -> Path:
    """VOC layout with PNG images (exact pixels), masks of class 1 left and 2 right, a split."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, pixels in images.items():
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{name}.png")
        mask = np.full(pixels.shape[:2], 1, np.uint8)
        mask[:, mask.shape[1] // 2 :] = 2
        Image.fromarray(mask).save(root / "SegmentationClass" / f"{name}.png")
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(images) + "\n")
    return root


def test_doctor_mean_and_std_count_the_pixels_of_non_square_images(tmp_path):
    # Two 8x16 images (h x w), constant (51, 102, 153) and (153, 204, 255): per band the mean
    # of 0.2 and 0.6, 0.4 and 0.8, 0.6 and 1.0 over 128 pixels each, and a std of 0.2.
    dark = np.broadcast_to(np.array([51, 102, 153], np.uint8), (8, 16, 3)).copy()
    light = np.broadcast_to(np.array([153, 204, 255], np.uint8), (8, 16, 3)).copy()
    root = write_png_tree(tmp_path / "VOC2012", {"dark": dark, "light": light})
    report = diagnose(root, image_ext=".png")
    assert report.problems == [] and report.sizes == {(16, 8): 2}
    mean, std = report.totals.mean_std(3)
    assert mean == pytest.approx([0.4, 0.6, 0.8]) and std == pytest.approx([0.2, 0.2, 0.2])
    assert report.pixels[1] == report.pixels[2] == 2 * 8 * 8
    assert "3 bands in 2 images: mean [0.4, 0.6, 0.8] std [0.2, 0.2, 0.2]" in format_report(report)


def test_folder_ids_keep_their_sub_folder(tmp_path):
    """Two cities may number their frames alike: the sub-folder tells them apart."""
    for side in ("images", "masks"):
        for city in ("bonn", "ulm"):
            folder = tmp_path / side / "train" / city
            folder.mkdir(parents=True)
            for frame in ("0001", "0002"):
                value = 1 if city == "bonn" else 2
                Image.fromarray(np.full((4, 6), value, np.uint8)).save(folder / f"{frame}.png")
    found = index_files(tmp_path / "images" / "train", "{id}", IMAGE_TYPES)
    assert sorted(found) == ["bonn/0001", "bonn/0002", "ulm/0001", "ulm/0002"]
    assert found["ulm/0001"] == tmp_path / "images/train/ulm/0001.png"
    samples = folder_samples(tmp_path, "train")
    assert [s.id for s in samples] == sorted(found)
    for sample in samples:
        assert sample.image.parent.name == sample.mask.parent.name == sample.id.split("/")[0]
    flat = tmp_path / "flat"
    for city in ("bonn", "ulm"):
        (flat / city).mkdir(parents=True)
        Image.fromarray(np.zeros((4, 6), np.uint8)).save(flat / city / "0001.png")
    (flat / "bonn" / "0001.jpg").write_bytes(b"")  # one id, two files: refused, not merged
    with pytest.raises(DuplicateIdError, match="bonn/0001|1 ids"):
        index_files(flat, "{id}", IMAGE_TYPES)


def test_rgba_images_come_back_in_rgb_order(tmp_path):
    pixels = np.zeros((4, 6, 4), np.uint8)
    pixels[...] = (10, 100, 200, 250)
    Image.fromarray(pixels, "RGBA").save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png")[0, 0].tolist() == [10, 100, 200]
    assert read_image(tmp_path / "rgba.png", 4)[0, 0].tolist() == [10, 100, 200, 250]
    Image.fromarray(pixels[..., :3]).save(tmp_path / "rgb.png")
    assert read_image(tmp_path / "rgb.png")[0, 0].tolist() == [10, 100, 200]


def test_reduce_zero_label_keeps_255_ignored():
    decoder = MaskDecoder(150, reduce_zero_label=True)
    raw = np.array([[0, 1, 2, 150, 255]], np.uint8)
    assert decoder(raw, "ade.png").tolist() == [[255, 0, 1, 149, 255]]
    wide = np.array([[0, 1, 150, 255]], np.uint16)  # 16-bit masks read through the same table
    assert decoder(wide, "ade16.png").tolist() == [[255, 0, 149, 255]]
    lut = label_lut(150, reduce_zero_label=True)
    assert lut[255] == 255 and lut[150] == 149 and lut[151] == -1


def scaled_heights(scale_range: tuple[float, float], seeds: range) -> list[int]:
    """Heights of a 40x60 image after random_scale (no base size), one per seed."""
    transform = A.Compose([random_scale(None, scale_range)])
    image = np.zeros((40, 60, 3), np.uint8)
    heights = []
    for seed in seeds:
        transform.set_random_seed(seed)
        out = transform(image=image)["image"]
        assert abs(out.shape[1] / out.shape[0] - 1.5) < 0.1  # the aspect ratio is kept
        heights.append(out.shape[0])
    return heights


def test_random_scale_draws_factors_inside_the_scale_range():
    assert set(scaled_heights((0.5, 0.5), range(5))) == {20}
    assert set(scaled_heights((1.5, 1.5), range(5))) == {60}
    heights = scaled_heights((0.5, 2.0), range(200))
    assert min(heights) >= 20 and max(heights) <= 80
    assert min(heights) < 26 and max(heights) > 74  # the whole range is drawn from
