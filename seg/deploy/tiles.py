"""Images of any size in bounded memory: tile-by-tile inference with blended overlaps.

Tiles of ``tile`` pixels every ``tile - overlap`` are read from the file (rasterio's windowed
reads), scored, weighted by a window that falls off over the overlap and summed where they
overlap; each block that no later tile touches is argmaxed and written to the output at once
(windowed writes). The argmax of the weighted sum is the argmax of the weighted mean, so no
weight sum is kept. Held at any time: one tile's scores ``(K, tile, tile)`` and the overlap
rows carried to the next row of tiles, ``(K, overlap, W)`` twice: for a 10,000-pixel-wide image,
11 classes and a 64-pixel overlap that is 56 MB, against 4.4 GB for whole-image logits.

GeoTIFFs keep their CRS, transform and nodata (pixels equal to nodata in every band become
class 255, the output's nodata). A TIFF without georeferencing is written as a plain TIFF, with
a note. The output is written under a temporary name and renamed when complete, so a failure
(a full disk) never leaves a file that looks finished. Never imports torch.
"""

import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from seg.errors import ChannelError, ConfigError, DatasetError

Score = Callable[[np.ndarray], np.ndarray]  # pixels (h, w, C) on 0..255 -> scores (K, h, w)
NODATA = 255
CACHE_MB = 64  # GDAL's block cache, which would otherwise grow to 5 % of RAM


def starts(size: int, tile: int, stride: int) -> list[int]:
    """Offsets of tiles every ``stride`` over ``size``; the last tile is cut at the edge.

    Not moved flush with the edge: that would overlap its neighbour by up to a whole tile, and
    the rows carried between tile rows would grow from ``overlap`` to ``tile``.
    """
    return list(range(0, max(size - (tile - stride), 1), stride))


def ramp(n: int, overlap: int) -> np.ndarray:
    """1-D blending weights: 1 inside, falling linearly (never to 0) over ``overlap`` at ends."""
    i = np.arange(n, dtype=np.float32) + 0.5
    edge = max(overlap, 1)
    return np.minimum(1.0, np.minimum(i, n - i) / edge).astype(np.float32)


def blend(
    read: Callable[[int, int, int, int], np.ndarray],
    score: Score,
    size: tuple[int, int],
    tile: int,
    overlap: int,
    write: Callable[[int, int, np.ndarray], None],
) -> None:
    """Score ``read(y0, y1, x0, x1)`` tile by tile, ``write(y, x, classes)`` finished blocks."""
    height, width = size
    stride = tile - overlap
    ys, xs = starts(height, tile, stride), starts(width, tile, stride)
    above = None  # (K, rows, W): the previous row of tiles' sums for this row's top rows
    for r, y in enumerate(ys):
        th = min(tile, height - y)
        y_end = ys[r + 1] if r + 1 < len(ys) else height  # rows [y, y_end) finish in this row
        below, right = None, None  # right: (K, th, cols) sums carried from the tile on the left
        for c, x in enumerate(xs):
            tw = min(tile, width - x)
            x_end = xs[c + 1] if c + 1 < len(xs) else width
            scores = score(read(y, y + th, x, x + tw))  # (K, th, tw)
            acc = scores * (ramp(th, overlap)[:, None] * ramp(tw, overlap)[None, :])
            done = 0 if right is None else right.shape[2]
            if right is not None:
                acc[:, :, :done] += right
            if above is not None:  # columns left of `done` had theirs through `right`
                acc[:, : above.shape[1], done:] += above[:, :, x + done : x + tw]
            if below is None:
                below = np.zeros((acc.shape[0], y + th - y_end, width), np.float32)
            write(y, x, acc[:, : y_end - y, : x_end - x].argmax(0).astype(np.uint8))
            below[:, :, x:x_end] = acc[:, y_end - y :, : x_end - x]
            right = acc[:, :, x_end - x :]
        above = below


def pixels_0_255(window: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A rasterio window ``(C, h, w)`` -> ``(h, w, C)`` on the 0..255 scale, as read_image."""
    window = np.moveaxis(window, 0, -1)
    if dtype == np.uint8:
        return window
    if dtype == np.uint16:
        return window.astype(np.float32) / 257
    if np.issubdtype(dtype, np.floating):
        return window.astype(np.float32) * 255
    raise DatasetError(f"pixels of type {dtype} are not supported; give 8- or 16-bit images")


def output_profile(src, georeferenced: bool) -> dict:
    """A tiled, compressed single-band uint8 GeoTIFF profile for the class map of ``src``."""
    profile = dict(driver="GTiff", width=src.width, height=src.height, count=1, dtype="uint8",
                   tiled=True, blockxsize=256, blockysize=256, compress="deflate",
                   nodata=NODATA)  # fmt: skip
    if georeferenced:
        profile |= dict(crs=src.crs, transform=src.transform)
    return profile


def open_source(source: Path, bands: int):
    """The raster ``source`` (rasterio), refused unless it has the model's ``bands``."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        src = rasterio.open(source)
    count = src.count
    if count != bands:
        src.close()
        raise ChannelError(
            f"image {source} has {count} bands but the model reads {bands}; give images "
            f"with {bands} bands, or a model trained on images like this one"
        )
    return src


def kept_facts(src) -> dict:
    """What the output keeps of the source: CRS (None without one), transform and nodata."""
    crs = src.crs.to_string() if src.crs is not None else None
    return {"crs": crs, "transform": tuple(src.transform)[:6], "nodata": src.nodata}


def predict_tiled(
    source: Path, target: Path, score: Score, bands: int, palette, tile: int, overlap: int
) -> dict:
    """Class map of ``source`` as the single-band TIFF ``target``; returns what was kept."""
    os.environ.setdefault("GDAL_CACHEMAX", str(CACHE_MB))  # read by GDAL at its first use
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.windows import Window

    if not 0 <= overlap < tile:
        raise ConfigError(
            f"tiling.overlap={overlap} must be at least 0 and below tiling.tile={tile}"
        )
    partial = target.with_name(f".{target.name}.partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open_source(source, bands) as src:
        georeferenced, kept = src.crs is not None, kept_facts(src)
        if not georeferenced:
            print(f"note: {source} has no georeferencing (CRS); {target.name} is written as a "
                  f"plain TIFF", file=sys.stderr)  # fmt: skip
        dtype, nodata = np.dtype(src.dtypes[0]), src.nodata

        def read(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            return src.read(window=Window(x0, y0, x1 - x0, y1 - y0))

        def write_block(dst, y: int, x: int, classes: np.ndarray) -> None:
            h, w = classes.shape
            if nodata is not None:
                empty = (read(y, y + h, x, x + w) == nodata).all(axis=0)
                classes = np.where(empty, NODATA, classes).astype(np.uint8)
            dst.write(classes, 1, window=Window(x, y, w, h))

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                dst = rasterio.open(partial, "w", **output_profile(src, georeferenced))
            with dst:
                dst.write_colormap(1, {i: tuple(c) for i, c in enumerate(palette[:255])})
                blend(lambda *box: pixels_0_255(read(*box), dtype), score,
                      (src.height, src.width), tile, overlap,
                      lambda y, x, c: write_block(dst, y, x, c))  # fmt: skip
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise DatasetError(
                f"writing {target} failed ({error}); no partial file was left. Free space on "
                f"{target.parent} (or choose paths.output_dir elsewhere) and run again"
            ) from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    os.replace(partial, target)
    return kept


def image_size(path: Path) -> tuple[int, int, bool]:
    """(height, width, georeferenced) from the header alone; (0, 0, False) when unreadable."""
    try:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning
    except ImportError:
        return 0, 0, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return src.height, src.width, src.crs is not None
    except rasterio.errors.RasterioIOError:
        return 0, 0, False
