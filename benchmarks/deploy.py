"""Deployment runtimes on CamVid val: images/s and mIoU of one checkpoint, same images, A B A B.

    python -m benchmarks.deploy --ckpt <camvid checkpoint> [--images 40] [--threads 1]

Contenders, each the same computation (uint8 image in, normalise, network, argmax out; the
graph of seg/deploy/onnx.py): torch eager fp32, torch bf16 autocast, torch.compile, onnxruntime
fp32, onnxruntime int8 (static QDQ, per-channel, calibrated on 32 training images) and
OpenVINO (fp32, the ONNX model) when its wheel is installed. A contender that cannot run is
listed with the reason. Each image is timed once per contender, contenders alternating image by
image; images/s is 1 / the median time per image. Without --ckpt, a checkpoint is trained for
--train-steps steps of the CamVid recipe first.
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import CAMVID, base_parser, camvid_recipe, machine_info, median, report
from seg.checkpoint import load_network
from seg.deploy.onnx import DeployGraph, export_deployable
from seg.deploy.quantize import confusion, miou, quantize_file
from seg.deploy.runtime import DeployedModel


def camvid_split(root: Path, split: str, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image uint8 (H, W, 3), mask) pairs of a CamVid split, as the recipe reads them."""
    from hydra.utils import instantiate

    datamodule = instantiate(camvid_recipe(root, []).data, num_workers=0)
    dataset = datamodule.dataset(split)
    return [dataset.load(i) for i in range(min(count, len(dataset)))]


def torch_step(graph: DeployGraph, bf16: bool = False):
    def step(image: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            return graph(torch.from_numpy(image[None]))[0][0].numpy()

    return step


def compiled_step(graph: DeployGraph, sample: np.ndarray):
    """torch.compile of the graph, compiled on ``sample`` (its cost reported, not timed)."""
    compiled = torch.compile(graph)
    start = time.perf_counter()
    with torch.inference_mode():
        compiled(torch.from_numpy(sample[None]))
    print(f"torch.compile: first call {time.perf_counter() - start:.1f} s", flush=True)
    return torch_step(compiled)


def openvino_step(path: Path, threads: int):
    import openvino

    core = openvino.Core()
    model = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads})
    return lambda image: model(image[None])[model.outputs[0]][0]


def contenders(ckpt: Path, folder: Path, train: list, sample: np.ndarray, threads: int):
    """name -> step (image -> classes) or the reason it is skipped."""
    from seg.training import cpu_has_bf16

    model, info = load_network(ckpt)
    graph = DeployGraph(model, info["mean"], info["std"], flip=False, probabilities=False)
    fp32 = export_deployable(model, info, folder / "fp32.onnx", probabilities=False, dynamo=False)
    int8 = quantize_file(fp32, folder / "int8.onnx", (image for image, _ in train), np.uint8)
    steps = {"torch eager fp32": torch_step(graph)}
    steps["torch bf16 autocast"] = torch_step(graph, bf16=True)
    if not cpu_has_bf16():
        steps["torch bf16 autocast"] = "skipped: this CPU has no bf16 instructions (emulated)"
    try:
        steps["torch.compile fp32"] = compiled_step(graph, sample)
    except Exception as error:  # compile failures come in many classes
        steps["torch.compile fp32"] = f"skipped: {type(error).__name__}: {str(error)[:120]}"
    steps["onnxruntime fp32"] = DeployedModel(fp32, threads).classes
    steps["onnxruntime int8"] = DeployedModel(int8, threads).classes
    try:
        steps["OpenVINO fp32"] = openvino_step(fp32, threads)
    except ImportError:
        steps["OpenVINO fp32"] = "skipped: the openvino wheel is not installed"
    return steps


def measure(steps: dict, images: list, k: int) -> list[dict]:
    """Time every runnable step on each image in turn (A B A B); rows of images/s and mIoU."""
    runnable = {name: step for name, step in steps.items() if callable(step)}
    times = {name: [] for name in runnable}
    matrices = {name: np.zeros((k, k), np.int64) for name in runnable}
    for step in runnable.values():  # one warm-up each
        step(images[0][0])
    for image, mask in images:
        for name, step in runnable.items():
            start = time.perf_counter()
            classes = step(image)
            times[name].append(time.perf_counter() - start)
            matrices[name] += confusion(classes, mask, k)
    base = 1 / median(times["torch eager fp32"])
    ort = 1 / median(times["onnxruntime fp32"])
    rows = []
    for name, step in steps.items():
        if not callable(step):
            rows.append({"runtime": name, "note": step})
            continue
        speed = 1 / median(times[name])
        row = {"runtime": name, "images/s": speed, "x torch eager": speed / base}
        rows.append(row | {"x onnxruntime fp32": speed / ort, "mIoU (%)": miou(matrices[name])})
    return rows


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, default=None, help="a CamVid checkpoint")
    parser.add_argument("--root", type=Path, default=CAMVID, help="CamVid in VOC layout")
    parser.add_argument("--images", type=int, default=101, help="val images (101: all)")
    parser.add_argument("--calibration", type=int, default=32, help="train images for int8")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-steps", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.ckpt or train_briefly(args.root, args.train_steps, Path(tmp))
        val = camvid_split(args.root, "val", args.images)
        train = camvid_split(args.root, "train", args.calibration)
        steps = contenders(ckpt, Path(tmp), train, val[0][0], args.threads)
        rows = measure(steps, val, len(load_network(ckpt)[1]["class_names"]))
    columns = ["runtime", "images/s", "x torch eager", "x onnxruntime fp32", "mIoU (%)", "note"]
    settings = {"ckpt": str(ckpt), "images": len(val), "size": list(val[0][0].shape[:2]),
                "calibration_images": len(train), "threads": args.threads,
                "command": "python -m benchmarks.deploy " + " ".join(sys.argv[1:])}  # fmt: skip
    table = {f"CamVid val, {len(val)} images": (rows, columns)}
    report("deploy", machine_info(torch.device("cpu")), settings, table, args.out)


def train_briefly(root: Path, steps: int, folder: Path) -> Path:
    """A CamVid checkpoint from ``steps`` steps of the recipe (for a machine without one)."""
    from train import train

    cfg = camvid_recipe(root, [f"trainer.max_steps={steps}", "data.num_workers=0"], str(folder))
    train(cfg)
    return folder / "checkpoints" / "last.ckpt"


if __name__ == "__main__":
    main()
