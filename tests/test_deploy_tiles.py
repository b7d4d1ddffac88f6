"""Tiled prediction in bounded memory: blending, GeoTIFF georeferencing, nodata, failed writes."""

import tracemalloc

import numpy as np
import pytest
from conftest import compose, require
from test_evaluate import write_checkpoint

rasterio = require("rasterio", "pip install -e '.[export]'")
require("onnxruntime", "pip install -e '.[export]'")

from rasterio.transform import from_origin  # noqa: E402

from export import export  # noqa: E402
from predict import predict  # noqa: E402
from seg.deploy.tiles import blend, predict_tiled  # noqa: E402
from seg.errors import DatasetError  # noqa: E402

K = 4


def pointwise(pixels: np.ndarray) -> np.ndarray:
    """Scores that depend on each pixel alone: tiling must not change the argmax anywhere."""
    x = pixels.astype(np.float32)
    return np.stack([x[..., 0], 255 - x[..., 0], x[..., 1], (x[..., 2] * 7) % 255])


def run_blend(image: np.ndarray, tile: int, overlap: int) -> np.ndarray:
    out = np.full(image.shape[:2], 99, np.uint8)

    def write(y, x, classes):
        assert (out[y : y + classes.shape[0], x : x + classes.shape[1]] == 99).all()  # once
        out[y : y + classes.shape[0], x : x + classes.shape[1]] = classes

    read = lambda y0, y1, x0, x1: image[y0:y1, x0:x1]  # noqa: E731
    blend(read, pointwise, image.shape[:2], tile, overlap, write)
    return out


@pytest.mark.parametrize("size", [(100, 130), (64, 64), (37, 200), (20, 30)])
def test_blending_covers_every_pixel_once_and_keeps_pointwise_argmax(size):
    image = np.random.default_rng(0).integers(0, 256, (*size, 3)).astype(np.uint8)
    np.testing.assert_array_equal(run_blend(image, 48, 16), pointwise(image).argmax(0))


def test_overlapping_scores_are_blended_not_overwritten():
    """Two tiles disagree in their overlap: the weighted sum decides, as hand-computed."""
    calls = []

    def score(pixels):
        calls.append(pixels.shape)
        first = len(calls) == 1  # the left tile prefers class 0, the right one class 1
        out = np.zeros((2, *pixels.shape[:2]), np.float32)
        out[0 if first else 1] = 1.0 if first else 3.0
        return out

    out = np.zeros((8, 12), np.uint8)

    def write(y, x, classes):
        out[y : y + classes.shape[0], x : x + classes.shape[1]] = classes

    blank = lambda y0, y1, x0, x1: np.zeros((y1 - y0, x1 - x0, 3), np.uint8)  # noqa: E731
    blend(blank, score, (8, 12), 8, 4, write)
    # overlap columns 4..7: left weights fall 1, 0.875, 0.625, 0.375 (x 1) vs right rising
    # 0.125, 0.375, 0.625, 0.875 (x 3): 1 beats 0.375 only at column 4
    assert out[0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]


def traced_peak(height: int, width: int) -> int:
    """Peak Python-allocated bytes of blending an image read lazily (nothing whole in memory)."""
    rng = np.random.default_rng(0)
    read = lambda y0, y1, x0, x1: rng.integers(0, 256, (y1 - y0, x1 - x0, 3), np.uint8)  # noqa: E731
    score = lambda p: np.repeat(p[None, :, :, 0].astype(np.float32), 11, 0)  # noqa: E731
    tracemalloc.start()
    blend(read, score, (height, width), 256, 32, lambda y, x, c: None)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_peak_memory_does_not_grow_with_the_image():
    """4x the side (16x the pixels): peak grows only by the carried overlap rows (K x 32 x W)."""
    small, large = traced_peak(1024, 1024), traced_peak(4096, 4096)
    whole_logits = 4096 * 4096 * 11 * 4
    carried = 2 * 11 * 32 * (4096 - 1024) * 4  # above + below rows, float32
    assert large - small < 1.2 * carried, (small, large)
    assert large < 2 * small and large < whole_logits / 25, (small, large)


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiles")
    ckpt = write_checkpoint(tmp / "random.ckpt", num_classes=5, seed=0)
    export(compose("export", [f"ckpt_path={ckpt}", "exporter=torchscript"], tmp / "out"))
    return tmp / "out" / "random.onnx"


def write_geotiff(path, bands=3, dtype="uint8", crs="EPSG:32633", nodata=0, size=(150, 170)):
    rng = np.random.default_rng(1)
    top = 65535 if dtype == "uint16" else 255
    pixels = rng.integers(1, top, (bands, *size)).astype(dtype)
    pixels[:, :20, :30] = nodata if nodata is not None else 1
    profile = dict(driver="GTiff", width=size[1], height=size[0], count=bands, dtype=dtype,
                   transform=from_origin(500000, 4600000, 0.5, 0.5), nodata=nodata)  # fmt: skip
    profile |= {"crs": crs} if crs else {}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
    return path


def test_geotiff_keeps_crs_transform_and_nodata(onnx_model, tmp_path):
    source = write_geotiff(tmp_path / "scene.tif")
    overrides = [f"ckpt_path={onnx_model}", f"input={source}", "tiling.tile=64",
                 "tiling.overlap=16"]  # fmt: skip
    out = predict(compose("predict", overrides, tmp_path / "out"))
    (target,) = out["predictions"]
    with rasterio.open(source) as src, rasterio.open(target) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform
        assert (dst.width, dst.height, dst.count, dst.nodata) == (170, 150, 1, 255)
        classes = dst.read(1)
        assert dst.colormap(1)[1][:3] == (128, 0, 0)
    assert (classes[:20, :30] == 255).all()  # nodata in every band -> nodata
    assert set(np.unique(classes[20:])) <= set(range(5)) and len(np.unique(classes[20:])) > 1
    assert not list((tmp_path / "out" / "predict").glob(".*partial"))


def test_16_bit_four_band_geotiff_with_a_four_band_float_model(tmp_path):
    ckpt = write_checkpoint(tmp_path / "b.ckpt", num_classes=3, seed=0, in_channels=4)
    export(compose("export", [f"ckpt_path={ckpt}", "exporter=torchscript",
                              "input_dtype=float32"], tmp_path / "m"))  # fmt: skip
    source = write_geotiff(tmp_path / "s.tif", bands=4, dtype="uint16", nodata=None)
    overrides = [f"ckpt_path={tmp_path / 'm' / 'b.onnx'}", f"input={source}", "tiling.tile=64",
                 "tiling.overlap=16"]  # fmt: skip
    (target,) = predict(compose("predict", overrides, tmp_path / "out"))["predictions"]
    with rasterio.open(target) as dst:
        assert dst.crs.to_string() == "EPSG:32633" and dst.read(1).max() < 3


def test_a_tiff_without_georeferencing_becomes_a_plain_tiff_with_a_note(
    onnx_model, tmp_path, capsys
):
    source = write_geotiff(tmp_path / "plain.tif", crs=None)
    overrides = [f"ckpt_path={onnx_model}", f"input={source}", "tiling.above=0"]
    (target,) = predict(compose("predict", overrides, tmp_path / "out"))["predictions"]
    assert "has no georeferencing" in capsys.readouterr().err
    with rasterio.open(target) as dst:
        assert dst.crs is None and dst.height == 150


def test_a_full_disk_mid_write_leaves_no_file_that_looks_complete(onnx_model, tmp_path):
    source = write_geotiff(tmp_path / "scene.tif", size=(200, 200))
    target, written = tmp_path / "out" / "scene.tif", []

    def score(pixels):
        if written:
            raise OSError(28, "No space left on device")
        written.append(1)
        return np.ones((5, *pixels.shape[:2]), np.float32)

    palette = [[0, 0, 0]] * 5
    with pytest.raises(DatasetError, match="No space left on device.*no partial file was left"):
        predict_tiled(source, target, score, 3, palette, 64, 16)
    assert list((tmp_path / "out").iterdir()) == []
