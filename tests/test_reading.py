"""seg.data.reading and encodings: EXIF, trailing bytes, bands, duplicate ids, mask encodings."""

import io

import numpy as np
import pytest
import tifffile
from PIL import Image

from seg.data import SegmentationDataModule
from seg.data.encodings import MaskDecoder
from seg.data.layouts import Sample
from seg.data.reading import read_image, read_mask
from seg.data.reading import read_normalised as predict_image
from seg.doctor.cli import diagnose
from seg.errors import (
    ChannelError,
    DuplicateIdError,
    ImageReadError,
    LabelRangeError,
    UnknownColourError,
)

# What a camera stores for each EXIF orientation, given the upright picture (the inverse view).
STORED = {3: lambda a: np.rot90(a, 2), 6: lambda a: np.rot90(a, 1)}


def labels(h: int, w: int) -> np.ndarray:
    """A mask with four quadrant classes and a marked corner: every rotation tells apart."""
    mask = np.zeros((h, w), np.uint8)
    mask[: h // 2, w // 2 :], mask[h // 2 :, : w // 2], mask[h // 2 :, w // 2 :] = 1, 2, 3
    mask[:4, :4] = 4
    return mask


def save_with_orientation(array: np.ndarray, path, tag: int, **options) -> None:
    exif = Image.Exif()
    exif[0x0112] = tag
    Image.fromarray(np.ascontiguousarray(array)).save(path, exif=exif, **options)


@pytest.mark.parametrize("tag", [3, 6])
@pytest.mark.parametrize("size", [(32, 32), (32, 48)])
def test_exif_orientation_is_applied_to_image_and_mask_alike(tmp_path, tag, size):
    upright = labels(*size)
    image = np.stack([upright * 60] * 3, axis=-1)  # the image shows its own labels
    save_with_orientation(STORED[tag](image), tmp_path / "a.jpg", tag, quality=100)
    save_with_orientation(STORED[tag](upright), tmp_path / "a.png", tag)
    mask = read_mask(tmp_path / "a.png")
    assert np.array_equal(mask, upright)
    pixels = read_image(tmp_path / "a.jpg")
    assert pixels.shape == (*size, 3)
    assert np.abs(pixels[..., 0].astype(int) - upright * 60).max() <= 12  # JPEG, aligned
    tensor = predict_image(tmp_path / "a.jpg", [0.0] * 3, [1.0] * 3)  # predict's reader agrees
    assert np.allclose(tensor[0].permute(1, 2, 0).numpy() * 255, pixels, atol=1e-3)


def test_trailing_bytes_are_accepted_and_a_cut_file_is_refused(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    (tmp_path / "plain.jpg").write_bytes(data)
    (tmp_path / "tail.jpg").write_bytes(data + b"\x00padding from a camera" * 100)
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert np.array_equal(read_image(tmp_path / "tail.jpg"), read_image(tmp_path / "plain.jpg"))
    with pytest.raises(ImageReadError, match="cut.jpg is truncated"):
        read_image(tmp_path / "cut.jpg")
    png = io.BytesIO()
    Image.fromarray(labels(16, 16)).save(png, "PNG")
    (tmp_path / "tail.png").write_bytes(png.getvalue() + b"trailer" * 1000)
    assert np.array_equal(read_mask(tmp_path / "tail.png"), labels(16, 16))


def test_grey_rgba_and_16_bit_multiband_images(tmp_path):
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    rgba = np.dstack([np.full((6, 8, 3), 7, np.uint8), np.full((6, 8), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    bands = np.arange(6 * 8 * 4, dtype=np.uint16).reshape(6, 8, 4) * 257
    tifffile.imwrite(tmp_path / "four.tif", bands, photometric="minisblack")
    assert np.array_equal(read_image(tmp_path / "grey.png"), np.dstack([grey] * 3))
    assert np.array_equal(read_image(tmp_path / "grey.png", 1)[..., 0], grey)
    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgba[..., :3])
    four = read_image(tmp_path / "four.tif", 4)
    assert four.dtype == np.float32 and np.allclose(four, bands / 257)  # on the 0..255 scale
    with pytest.raises(ChannelError, match="four.tif has 4 channels but data.in_channels=3"):
        read_image(tmp_path / "four.tif", 3)


def test_encodings_decode_known_values():
    raw = np.array([[0, 7, 26], [9, 255, 33]], np.uint8)
    cityscapes = {7: 0, 26: 13, 33: 18} | {i: 255 for i in (0, 9)}
    decoded = MaskDecoder(19, label_map=cityscapes)(raw, "m.png")
    assert decoded.tolist() == [[255, 0, 13], [255, 255, 18]]
    ade = MaskDecoder(150, reduce_zero_label=True)(np.array([[0, 1, 150]], np.uint8), "a.png")
    assert ade.tolist() == [[255, 0, 149]]
    binary = MaskDecoder(2, mask_encoding="binary")
    assert binary(np.array([[0, 255]], np.uint8), "b.png").tolist() == [[0, 1]]
    assert binary(np.array([[1, 0]], np.uint16), "b.png").tolist() == [[1, 0]]
    with pytest.raises(LabelRangeError, match=r"b.png holds values \[0, 128, 255\]"):
        binary(np.array([[0, 128, 255]], np.uint8), "b.png")


def test_colour_masks_and_an_unknown_colour_named_with_its_pixels():
    decoder = MaskDecoder(
        2, mask_encoding="colour", palette=[[128, 64, 128], [0, 0, 142]], void_colours=[[0, 0, 0]]
    )
    raw = np.array([[[0, 0, 142], [128, 64, 128], [0, 0, 0]]], np.uint8)
    assert decoder(raw, "c.png").tolist() == [[1, 0, 255]]
    raw[0, :2] = [1, 2, 3]
    with pytest.raises(UnknownColourError, match=r"c.png holds colours .*\(1, 2, 3\): 2 px"):
        decoder(raw, "c.png")


def test_duplicate_ids_are_refused_and_listed_by_the_doctor(voc_root):
    split = voc_root / "ImageSets/Segmentation/train.txt"
    split.write_text(split.read_text() + "train_0002\n")
    dm = SegmentationDataModule(str(voc_root), num_workers=0, batch_size=2)
    with pytest.raises(DuplicateIdError, match="'train' lists 1 ids more than once.*train_0002"):
        dm.setup("fit")
    problems = diagnose(voc_root).problems
    assert sum("more than once (first: train_0002)" in p for p in problems) == 1


def test_two_files_for_one_id_in_a_folder_are_refused(tmp_path):
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images/a.jpg")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images/a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "masks/a.png")
    dm = SegmentationDataModule(str(tmp_path), layout="folder", folder={"val_fraction": 0.5})
    with pytest.raises(DuplicateIdError, match="a.jpg, .*a.png"):
        dm.samples("train")


def test_a_broken_first_training_mask_fails_as_a_dataset_error(voc_root):
    mask = voc_root / "SegmentationClass/train_0000.png"
    mask.write_bytes(mask.read_bytes()[:40])
    dm = SegmentationDataModule(str(voc_root))
    with pytest.raises(ImageReadError, match="train_0000.png is truncated or unreadable"):
        dm.palette  # noqa: B018 - train.py reads it before training


def test_sample_reads_exif_rotated_pairs_aligned(tmp_path):
    upright = labels(32, 48)
    save_with_orientation(STORED[6](np.stack([upright * 60] * 3, -1)), tmp_path / "i.png", 6)
    save_with_orientation(STORED[6](upright), tmp_path / "m.png", 6)
    from seg.data import SegmentationDataset

    image, mask = SegmentationDataset([Sample("i", tmp_path / "i.png", tmp_path / "m.png")]).load(0)
    assert np.array_equal(mask, upright) and np.array_equal(image[..., 1], upright * 60)
