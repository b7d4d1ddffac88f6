"""Mask encodings: raw mask values -> train ids (0..num_classes-1, and ignore_index).

- ``index``: palette or grey PNG (8- or 16-bit) whose values are class indices, remapped by an
  optional ``label_map`` (raw -> train id, e.g. Cityscapes labelIds -> trainIds) and by
  ``reduce_zero_label`` (ADE20K: 0 = "other" is ignored, 1..150 become 0..149);
- ``colour``: RGB masks whose colours are looked up in ``palette`` (one colour per class) and
  ``void_colours`` (ignored), as CamVid's originals and labelling tools write them;
- ``binary``: 0/1 or 0/255 masks as background/foreground; 255 is foreground here, not ignore.
"""

import numpy as np

from seg.errors import ColourMaskError, DatasetError, LabelRangeError, UnknownColourError

ENCODINGS = ("index", "colour", "binary")


def label_lut(
    num_classes: int,
    ignore_index: int = 255,
    label_map: dict | None = None,
    reduce_zero_label: bool = False,
    size: int = 256,
) -> np.ndarray:
    """Raw value -> train id for 0..size-1 as int32; -1 marks values that are neither.

    Unmapped values pass through (shifted down by one with reduce_zero_label); 255 (raw or
    mapped) means ignore.
    """
    if not 0 <= ignore_index <= 255 or ignore_index < num_classes:
        raise DatasetError(f"ignore_index={ignore_index} must lie in {num_classes}..255")
    lut = np.arange(size, dtype=np.int32)
    if reduce_zero_label:
        lut = np.where(lut == 0, 255, lut - 1)
        lut[255] = 255
    for raw, train_id in (label_map or {}).items():
        if not (0 <= int(raw) < size and (0 <= int(train_id) < num_classes or train_id == 255)):
            raise DatasetError(
                f"label_map entry {raw}: {train_id} is invalid; map raw values 0..{size - 1} to "
                f"0..{num_classes - 1} or 255 (ignore)"
            )
        lut[int(raw)] = int(train_id)
    lut[lut == 255] = ignore_index
    lut[(lut >= num_classes) & (lut != ignore_index)] = -1
    return lut


def colour_keys(colours) -> np.ndarray:
    """RGB triples (..., 3) -> one int per colour (r << 16 | g << 8 | b)."""
    c = np.asarray(colours, dtype=np.int64)
    return (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]


class MaskDecoder:
    """Decode one encoding into train ids uint8 (H, W); every refusal names the file."""

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        mask_encoding: str = "index",
        label_map: dict[int, int] | None = None,
        reduce_zero_label: bool = False,
        palette: list[list[int]] | None = None,
        void_colours: list[list[int]] | None = None,
    ) -> None:
        if mask_encoding not in ENCODINGS:
            raise DatasetError(
                f"data.mask_encoding={mask_encoding!r} is unknown; choose one of {ENCODINGS}"
            )
        if mask_encoding == "colour" and (palette is None or len(palette) != num_classes):
            raise DatasetError(
                f"data.mask_encoding=colour needs data.palette with one [r, g, b] per class "
                f"({num_classes}), got {0 if palette is None else len(palette)}; list the colour "
                "of each class in the mask files (python -m seg.doctor ROOT finds them)"
            )
        if mask_encoding == "binary" and num_classes != 2:
            raise DatasetError(
                f"data.mask_encoding=binary gives 2 classes, but data.class_names has "
                f"{num_classes}; name two classes (e.g. [background, foreground])"
            )
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.encoding = mask_encoding
        self.lut = label_lut(num_classes, ignore_index, label_map, reduce_zero_label, 65536)
        table = [*(palette or [])] + [*(void_colours or [])]
        ids = list(range(len(palette or []))) + [ignore_index] * len(void_colours or [])
        self.keys = colour_keys(table) if table else np.zeros(0, np.int64)
        self.ids = np.asarray(ids, np.uint8)

    def __call__(self, raw: np.ndarray, path) -> np.ndarray:
        """Raw mask values (H, W) or colours (H, W, 3) -> train ids uint8 (H, W)."""
        if self.encoding == "colour":
            return self.colour(raw, path)
        if raw.ndim == 3:
            raw = self.grey(raw, path)
        if self.encoding == "binary":
            return self.binary(raw, path)
        mask = self.lut[raw]  # (H, W) int32, -1 where a value is out of range
        if mask.min() < 0:
            bad = np.unique(raw[mask < 0]).tolist()
            raise LabelRangeError(
                f"mask {path} holds values {bad[:10]} outside 0..{self.num_classes - 1} and "
                f"{self.ignore_index}; fix the mask or map them with data.label_map"
            )
        return mask.astype(np.uint8)

    def grey(self, raw: np.ndarray, path) -> np.ndarray:
        """An RGB mask whose three channels agree -> its one channel; else refused."""
        if (raw == raw[..., :1]).all():
            return raw[..., 0]
        raise ColourMaskError(
            f"mask {path} is a colour (RGB) image but data.mask_encoding={self.encoding}; set "
            "data.mask_encoding=colour with data.palette (one colour per class), or convert the "
            "colours to class indices"
        )

    def binary(self, raw: np.ndarray, path) -> np.ndarray:
        values = np.unique(raw)
        if not (set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}):
            raise LabelRangeError(
                f"mask {path} holds values {values[:10].tolist()}, but a binary mask holds 0/1 or"
                " 0/255; threshold the mask, or use data.mask_encoding=index"
            )
        return (raw > 0).astype(np.uint8)

    def colour(self, raw: np.ndarray, path) -> np.ndarray:
        if raw.ndim != 3:
            raise ColourMaskError(
                f"mask {path} holds one value per pixel, not a colour, but "
                "data.mask_encoding=colour; set data.mask_encoding=index for index masks"
            )
        keys = colour_keys(raw[..., :3])  # (H, W)
        order = np.argsort(self.keys)
        pos = np.searchsorted(self.keys, keys, sorter=order).clip(0, len(order) - 1)
        found = self.keys[order[pos]] == keys
        if not found.all():
            colours, counts = np.unique(raw[~found][:, :3], axis=0, return_counts=True)
            pairs = zip(colours.tolist(), counts.tolist(), strict=True)
            listed = ", ".join(f"{tuple(c)}: {n} px" for c, n in pairs)
            raise UnknownColourError(
                f"mask {path} holds colours not in data.palette or data.void_colours "
                f"({listed[:300]}); add them to the palette (a class) or to void_colours"
            )
        return self.ids[order[pos]]
