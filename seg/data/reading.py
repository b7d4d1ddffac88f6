"""Decoding image and mask files into arrays, with the same integrity rules everywhere.

Training, evaluation, the doctor and prediction all read through these two functions, so they
agree on three things:

- EXIF orientation is applied to images and masks alike (a phone photo stored sideways with an
  orientation tag, and a mask drawn on the upright view, stay aligned);
- a JPEG or PNG cut short (no end marker after its last scan / image data) is refused, while
  bytes appended after a complete file are accepted;
- images keep their bands: grey, RGB, RGBA and multi-band TIFF (``tifffile``), 8 or 16 bit.

Images come back as uint8 ``(H, W, C)`` when 8-bit and as float32 ``(H, W, C)`` on the same
0..255 scale otherwise (16-bit divided by 257, floats taken as 0..1), so that one normalisation
(mean/std of 0..1 values) fits every depth.
"""

import io
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import scipy.io
import tifffile
import torch
from PIL import Image

from seg.errors import ChannelError, ImageReadError, LabelRangeError, MissingFileError
from seg.formats import TIFF_TYPES

ORIENTATION = 0x0112  # the EXIF orientation tag


def read_bytes(path: Path, what: str) -> np.ndarray:
    """The bytes of a file; a missing one raises MissingFileError naming it."""
    try:
        return np.fromfile(path, np.uint8)
    except (FileNotFoundError, IsADirectoryError):
        raise MissingFileError(f"{what} {path} is missing; add it or remove its id") from None


def truncated(data: np.ndarray) -> bool:
    """True when a JPEG lacks its end marker after the last scan, or a PNG lacks IEND."""
    raw = data.tobytes()
    if raw[:2] == b"\xff\xd8":  # the EOI of an EXIF thumbnail sits before the image's own scan
        return raw.rfind(b"\xff\xd9") < raw.rfind(b"\xff\xda")
    if raw[:4] == b"\x89PNG":
        return b"IEND" not in raw[-4096:] and b"IEND" not in raw
    return data.size == 0


def orientation(data: np.ndarray) -> int:
    """The EXIF orientation (1..8) of an encoded JPEG/PNG/WebP/TIFF, 1 when it has none."""
    raw = data.tobytes()
    if b"Exif" not in raw[:65536] and b"eXIf" not in raw:
        return 1
    try:
        with Image.open(io.BytesIO(raw)) as image:
            return int(image.getexif().get(ORIENTATION, 1))
    except (OSError, ValueError, SyntaxError):
        return 1


def orient(array: np.ndarray, tag: int) -> np.ndarray:
    """Apply EXIF orientation `tag` to an (H, W[, C]) array, as PIL's ImageOps.exif_transpose."""
    steps = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),  # rotate 90 degrees clockwise
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(steps[tag](array)) if tag in steps else array


def decode(path: Path, data: np.ndarray) -> np.ndarray | None:
    """Pixels (H, W[, C]) in RGB order and native depth, or None when undecodable."""
    if Path(path).suffix.lower() in TIFF_TYPES:
        try:
            image = tifffile.imread(io.BytesIO(data.tobytes()))
        except Exception:  # tifffile raises many types for a broken file
            return None
        # planar TIFFs come as (C, H, W): few bands first, many pixels last
        planar = image.ndim == 3 and image.shape[0] <= 16 < image.shape[2]
        return np.moveaxis(image, 0, -1) if planar else image
    flags = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(data, flags)
    if image is not None and image.ndim == 3 and image.shape[2] in (3, 4):
        code = cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
        image = cv2.cvtColor(image, code)
    return image


def fit_channels(path: Path, image: np.ndarray, channels: int | None) -> np.ndarray:
    """(H, W) or (H, W, C) -> (H, W, channels): grey repeated, PNG alpha dropped, else refused.

    channels None keeps the image's own bands.
    """
    image = image[..., None] if image.ndim == 2 else image
    have = image.shape[2]
    if have == channels or channels is None:
        return image
    if have == 1 and channels == 3:
        return np.repeat(image, 3, axis=2)
    if have == 4 and channels == 3 and path.suffix.lower() not in TIFF_TYPES:
        return image[..., :3]  # RGBA; a TIFF's fourth band is data (e.g. near infrared)
    raise ChannelError(
        f"image {path} has {have} channels but data.in_channels={channels}; set data.in_channels"
        f" (and model.in_channels, data.mean, data.std) to {have}, or convert the image"
    )


def to_scale(image: np.ndarray) -> np.ndarray:
    """uint8 stays; 16-bit and float become float32 on the 0..255 scale."""
    if image.dtype == np.uint8:
        return image
    if image.dtype in (np.uint16, np.int16):
        return image.astype(np.float32) / 257.0
    return image.astype(np.float32) * 255.0


def read_image(path: str | Path, channels: int | None = 3) -> np.ndarray:
    """An image as (H, W, channels), uint8 or float32 0..255, upright by its EXIF tag."""
    path = Path(path)
    data = read_bytes(path, "image")
    image = None if data.size == 0 or truncated(data) else decode(path, data)
    if image is None:
        raise ImageReadError(
            f"image {path} is truncated or unreadable; replace it with a good copy"
        )
    image = orient(image, orientation(data))
    return to_scale(fit_channels(path, image, channels))


def read_mask(path: str | Path) -> np.ndarray:
    """A mask's raw values, upright by its EXIF tag: (H, W) indices or (H, W, 3) RGB colours.

    PNG/BMP/TIFF through PIL (palettes stay indices, 16-bit stays 16-bit, alpha is dropped);
    SBD's ``.mat`` files (``GTcls.Segmentation``) through scipy.
    """
    path = Path(path)
    if path.suffix == ".mat":
        if not path.is_file():
            raise MissingFileError(f"mask {path} is missing; add it or remove its id")
        return scipy.io.loadmat(path)["GTcls"][0]["Segmentation"][0].astype(np.uint8)
    data = read_bytes(path, "mask")
    try:
        if truncated(data):
            raise OSError("no end marker")
        with Image.open(io.BytesIO(data.tobytes())) as png:
            mask = np.asarray(png.convert("RGB") if png.mode in ("RGBA", "LA", "CMYK") else png)
    except (OSError, SyntaxError, ValueError, KeyError, IndexError) as err:
        raise ImageReadError(
            f"mask {path} is truncated or unreadable ({err}); replace it"
        ) from None
    mask = orient(mask, orientation(data))
    if mask.ndim == 2 and mask.dtype != np.uint8 and (mask.min() < 0 or mask.max() > 65535):
        raise LabelRangeError(f"mask {path} holds values outside 0..65535; store class indices")
    return mask


def mask_palette(path: str | Path) -> list[list[int]] | None:
    """The RGB palette of a palette PNG mask, None for other masks; a broken file is refused."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        return None
    data = read_bytes(path, "mask")
    try:
        if truncated(data):
            raise OSError("no end marker")
        with Image.open(io.BytesIO(data.tobytes())) as png:
            flat = png.getpalette() if png.mode == "P" else None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(
            f"mask {path} is truncated or unreadable ({err}); replace it"
        ) from None
    return [flat[i : i + 3] for i in range(0, len(flat), 3)] if flat else None


def read_normalised(path: str | Path, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """An image file -> normalised ``(1, C, H, W)`` float32, as the evaluation pipeline gives.

    C = len(mean). The data pipeline's reader: same EXIF orientation and integrity rules.
    """
    pixels = np.asarray(read_image(path, len(mean)), dtype=np.float32) / 255  # (H, W, C)
    image = (torch.from_numpy(pixels) - torch.tensor(mean)) / torch.tensor(std)
    return image.permute(2, 0, 1).unsqueeze(0).contiguous()
