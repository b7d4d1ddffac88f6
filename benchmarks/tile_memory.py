"""Peak memory of tiled prediction against the image's size: predict.py on huge GeoTIFFs.

    python -m benchmarks.tile_memory [--sides 2500 10000] [--classes 11]

For each side, writes a side x side RGB uint8 GeoTIFF and a 4-band uint16 GeoTIFF (block by
block, never whole in memory), exports a network of the tiny backbone with ``--classes``
classes, and runs ``python predict.py runtime=onnx`` on each image in its own process. The
table gives the process's peak resident memory (``ru_maxrss``, imports included), the seconds
and what whole-image float32 logits would have needed. Peak memory should stay flat as the side
grows: one tile's scores plus the overlap rows carried between rows of tiles
(seg/deploy/tiles.py). The network does not matter for memory, so a random one is used.
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import REPO, base_parser, machine_info, report
from seg.deploy.onnx import export_deployable
from seg.models import build_model

BLOCK = 1024


def write_scene(path: Path, side: int, bands: int, dtype: str) -> Path:
    """A georeferenced, tiled GeoTIFF of smooth random fields, written window by window."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    top = 65535 if dtype == "uint16" else 255
    profile = dict(driver="GTiff", width=side, height=side, count=bands, dtype=dtype,
                   crs="EPSG:32633", transform=from_origin(500000, 4600000, 0.5, 0.5),
                   tiled=True, blockxsize=256, blockysize=256, nodata=0)  # fmt: skip
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", **profile) as dst:
        for y in range(0, side, BLOCK):
            for x in range(0, side, BLOCK):
                h, w = min(BLOCK, side - y), min(BLOCK, side - x)
                block = rng.integers(1, top, (bands, h, w)).astype(dtype)
                dst.write(block, window=Window(x, y, w, h))
    return path


def export_random(path: Path, classes: int, bands: int) -> Path:
    torch.manual_seed(0)
    model = build_model("fcn8s", "tiny", classes, weights=None, in_channels=bands)
    info = {"class_names": [f"class{i}" for i in range(classes)], "in_channels": bands,
            "palette": [[(37 * i) % 256, (91 * i) % 256, (173 * i) % 256] for i in range(classes)],
            "mean": [0.5] * bands, "std": [0.25] * bands, "arch": "fcn8s", "backbone": "tiny",
            "num_classes": classes}  # fmt: skip
    return export_deployable(model.eval(), info, path, dynamo=False)


def predict_peak(model: Path, image: Path, out: Path, threads: int) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of predict.py on ``image`` in a fresh process."""
    command = [sys.executable, "predict.py", "runtime=onnx", f"ckpt_path={model}",
               f"input={image}", f"threads={threads}", f"hydra.run.dir={out}",
               f"paths.output_dir={out}"]  # fmt: skip
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"predict.py failed on {image}: {child.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024, seconds  # Linux: kilobytes


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[2500, 10000])
    parser.add_argument("--classes", type=int, default=11)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime's threads")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for bands, dtype in ((3, "uint8"), (4, "uint16")):
            model = export_random(tmp / f"random{bands}.onnx", args.classes, bands)
            for side in args.sides:
                image = write_scene(tmp / f"scene{bands}_{side}.tif", side, bands, dtype)
                mib, seconds = predict_peak(model, image, tmp / f"out{bands}_{side}", args.threads)
                whole = side * side * args.classes * 4 / 2**20
                rows.append({
                    "image": f"{side}x{side}, {bands} bands {dtype}",
                    "megapixels": side * side / 1e6, "file MiB": image.stat().st_size / 2**20,
                    "peak RSS MiB": mib, "seconds": seconds, "whole-image logits MiB": whole,
                })  # fmt: skip
                print(rows[-1], flush=True)
                image.unlink()
    columns = ["image", "megapixels", "file MiB", "peak RSS MiB", "seconds",
               "whole-image logits MiB"]  # fmt: skip
    settings = {"classes": args.classes, "tile": 512, "overlap": 64, "threads": args.threads,
                "network": "fcn8s/tiny, random weights"}  # fmt: skip
    title = "Peak memory of tiled prediction (predict.py runtime=onnx)"
    report("tile_memory", machine_info(torch.device("cpu")), settings, {title: (rows, columns)},
           args.out)  # fmt: skip


if __name__ == "__main__":
    main()
