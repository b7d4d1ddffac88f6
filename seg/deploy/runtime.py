"""Run a model written by export.py with onnxruntime: no torch on this path.

The model's contract (``seg.deploy.onnx`` writes it): input ``images`` ``(N, H, W, C)`` uint8
(or float32 on the same 0..255 scale, ``seg.input_dtype``), C = ``seg.bands``; outputs
``classes`` ``(N, H, W)`` uint8 and, when exported with them, ``probabilities``
``(N, K, H, W)`` float32. The facts a caller needs (class names, palette, mean/std, bands,
training summary) are JSON strings in the model's ``metadata_props`` under ``seg.*`` keys.
"""

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from seg.errors import ChannelError, CheckpointError, ImageReadError
from seg.formats import TIFF_TYPES

FORMAT = "seg-onnx/1"  # metadata "seg.format": a model this program exported
KEYS = ("format", "class_names", "palette", "mean", "std", "bands", "input_dtype", "flip",
        "outputs", "training")  # fmt: skip


class ForeignModelError(CheckpointError):
    """An ONNX file that export.py did not write (no ``seg.*`` metadata)."""


def session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session; ``threads`` None is onnxruntime's default (every core)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph classes
        raise CheckpointError(
            f"{path} is not a readable ONNX model ({' '.join(str(error).split())[:200]}); "
            f"give a file written by `python export.py`"
        ) from None


def read_metadata(meta: dict[str, str], path: str | Path) -> dict:
    """The ``seg.*`` metadata decoded from JSON; refuse a model export.py did not write."""
    if meta.get("seg.format") != json.dumps(FORMAT):
        raise ForeignModelError(
            f"{path} is an ONNX model, but not one written by this program's export.py (its "
            f"metadata lacks seg.format={FORMAT}), so its input scaling, bands and classes are "
            f"unknown; export the checkpoint with `python export.py ckpt_path=<checkpoint>`"
        )
    return {key: json.loads(meta[f"seg.{key}"]) for key in KEYS if f"seg.{key}" in meta}


class DeployedModel:
    """An exported model: its facts from the metadata, and ``classes``/``probabilities``."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"ckpt_path={path} does not exist; give an exported .onnx file")
        self.session = session(self.path, threads)
        self.meta = read_metadata(self.session.get_modelmeta().custom_metadata_map, path)
        self.bands, self.class_names = self.meta["bands"], self.meta["class_names"]
        self.palette, self.outputs = self.meta["palette"], self.meta["outputs"]
        self.dtype = np.dtype(self.meta["input_dtype"])

    def prepare(self, pixels: np.ndarray, name: str = "image") -> np.ndarray:
        """``(H, W, C)`` pixels on the 0..255 scale -> the model's ``(1, H, W, C)`` input."""
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if pixels.shape[2] != self.bands:
            raise ChannelError(
                f"{name} has {pixels.shape[2]} bands but the model {self.path.name} reads "
                f"{self.bands}; give images with {self.bands} bands, or a model exported from a "
                f"checkpoint trained on images like this one"
            )
        if self.dtype == np.uint8 and pixels.dtype != np.uint8:
            pixels = np.clip(np.rint(pixels), 0, 255)  # a 16-bit image scaled to 0..255 (/257)
        return np.ascontiguousarray(pixels[None], dtype=self.dtype)

    def run(self, pixels: np.ndarray, outputs: list[str], name: str = "image") -> list:
        return self.session.run(outputs, {"images": self.prepare(pixels, name)})

    def classes(self, pixels: np.ndarray, name: str = "image") -> np.ndarray:
        """Class indices ``(H, W)`` uint8 of one image ``(H, W, C)``."""
        return self.run(pixels, ["classes"], name)[0][0]

    def probabilities(self, pixels: np.ndarray, name: str = "image") -> np.ndarray:
        """Class probabilities ``(K, H, W)`` float32 of one image ``(H, W, C)``."""
        if "probabilities" not in self.outputs:
            raise CheckpointError(
                f"{self.path} was exported without its probabilities output, which tiled "
                f"prediction blends; export it again with `python export.py ... "
                f"probabilities=true`"
            )
        return self.run(pixels, ["probabilities"], name)[0][0]


def rgb_view(pixels: np.ndarray) -> np.ndarray:
    """Bands 1-3 (or grey) of 0..255 pixels as RGB uint8, for overlays."""
    pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
    rgb = pixels[:, :, :3] if pixels.shape[2] >= 3 else np.repeat(pixels[:, :, :1], 3, axis=2)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def replace_atomically(temporary: Path, final: Path) -> None:
    """Move a finished file into place; a half-written one never carries the final name."""
    os.replace(temporary, final)


def read_pixels(path: str | Path) -> np.ndarray:
    """An image file -> ``(H, W, C)`` on the 0..255 scale (uint8, or float32 for 16-bit).

    The torch-free twin of seg.data.reading.read_image (which sits in a package that imports
    torch): EXIF orientation applied, 16-bit divided by 257, floats taken as 0..1.
    """
    from PIL import ImageOps, UnidentifiedImageError

    try:
        if Path(path).suffix.lower() in TIFF_TYPES:
            import tifffile

            pixels = tifffile.imread(path)
            if pixels.ndim == 3 and pixels.shape[0] < 8 and pixels.shape[2] > 8:
                pixels = np.moveaxis(pixels, 0, -1)  # planar (C, H, W)
        else:
            with Image.open(path) as image:
                image = ImageOps.exif_transpose(image)
                pixels = np.asarray(image.convert("RGB") if image.mode == "P" else image)
    except (OSError, ValueError, UnidentifiedImageError) as error:
        message = f"image {path} cannot be read ({error}); replace or remove it"
        raise ImageReadError(message) from None
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / 257
    if np.issubdtype(pixels.dtype, np.floating):
        return pixels.astype(np.float32) * 255
    return pixels.astype(np.uint8)
