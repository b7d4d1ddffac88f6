"""One self-contained ONNX model: uint8 images in, class indices (and probabilities) out.

Inside the graph, in order: ``(N, H, W, C)`` uint8 (or float32 on the 0..255 scale) -> float,
/255, normalised with the checkpoint's mean/std, to NCHW; the network (SegmentationModel pads to
a multiple of 32 and crops back itself); the mirrored view's logits averaged in when ``flip``;
``classes`` = argmax as uint8 ``(N, H, W)``; ``probabilities`` = softmax ``(N, K, H, W)`` when
asked for. That is what predict.py's PyTorch path computes at scale 1.0, so class maps agree
pixel for pixel wherever two logits are not tied. Multi-scale views are not in the graph.

The facts a user needs ride along as JSON strings in ``metadata_props`` (``seg.*``), and a
Markdown model card is written beside the model. torch's default (dynamo) exporter keeps batch,
height and width symbolic; ``dynamo=False`` picks the older TorchScript exporter (faster).
"""

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from seg.deploy.runtime import FORMAT, session

SAMPLE_SIZE = (64, 96)  # traced once at this size; every dimension stays dynamic
INPUT_DTYPES = {"uint8": torch.uint8, "float32": torch.float32}


class DeployGraph(nn.Module):
    """Pre-processing, the network, flip TTA and argmax as one module."""

    def __init__(self, model: nn.Module, mean, std, flip: bool, probabilities: bool) -> None:
        super().__init__()
        self.model, self.flip, self.with_probabilities = model.eval(), flip, probabilities
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def logits(self, images: Tensor) -> Tensor:
        x = images.permute(0, 3, 1, 2).float() / 255  # (N, C, H, W) on 0..1, as read_image
        x = (x - self.mean) / self.std
        logits = self.model(x)  # (N, K, H, W)
        if self.flip:
            logits = (logits + self.model(x.flip(-1)).flip(-1)) / 2  # as seg.inference.infer
        return logits

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        logits = self.logits(images)
        classes = logits.argmax(dim=1).to(torch.uint8)  # (N, H, W)
        if self.with_probabilities:
            return classes, logits.softmax(dim=1)
        return (classes,)


def with_defaults(info: dict) -> dict:
    """The checkpoint's facts with VOC's names and colours where it has none, as predict.py."""
    from seg.data.voc import VOC_CLASSES, voc_colormap

    k = info["num_classes"]
    names = info.get("class_names") or [*VOC_CLASSES, *(f"class {i}" for i in range(21, k))][:k]
    return info | {"class_names": names, "palette": info.get("palette") or voc_colormap()[:k]}


def training_summary(info: dict) -> dict:
    """What the checkpoint says about its training, for the metadata and the card."""
    keys = ("arch", "backbone", "num_classes", "in_channels", "epoch", "step", "eval_scale",
            "eval_flip", "ignore_index", "weights")  # fmt: skip
    return {k: info[k] for k in keys if k in info and isinstance(info[k], str | int | float)}


def metadata(info: dict, flip: bool, outputs: list[str], input_dtype: str) -> dict[str, str]:
    """The ``seg.*`` metadata_props, each a JSON string."""
    info = with_defaults(info)
    facts = {
        "format": FORMAT,
        "class_names": list(info["class_names"]),
        "palette": [list(map(int, c)) for c in info["palette"]],
        "mean": list(map(float, info["mean"])),
        "std": list(map(float, info["std"])),
        "bands": int(info.get("in_channels", 3)),
        "input_dtype": input_dtype,
        "flip": flip,
        "outputs": outputs,
        "training": training_summary(info),
    }
    return {f"seg.{key}": json.dumps(value) for key, value in facts.items()}


def export_graph(graph: nn.Module, path: Path, bands: int, dtype: str, dynamo: bool) -> None:
    sample = torch.randint(0, 256, (2, *SAMPLE_SIZE, bands)).to(INPUT_DTYPES[dtype])
    outputs = ["classes", "probabilities"] if graph.with_probabilities else ["classes"]
    names = {"input_names": ["images"], "output_names": outputs}
    if dynamo:
        dim = torch.export.Dim
        shapes = {"images": {0: dim("batch"), 1: dim("height"), 2: dim("width")}}
        program = torch.onnx.export(
            graph, (sample,), dynamo=True, dynamic_shapes=shapes, optimize=True, **names
        )
        program.save(str(path))
    else:
        axes = {"images": {0: "batch", 1: "height", 2: "width"}}
        axes |= {"classes": {0: "batch", 1: "height", 2: "width"}}
        axes |= {"probabilities": {0: "batch", 2: "height", 3: "width"}}
        torch.onnx.export(graph, (sample,), path, dynamo=False, dynamic_axes=axes, **names)


def export_deployable(
    model: nn.Module,
    info: dict,
    path: str | Path,
    flip: bool = False,
    probabilities: bool = True,
    input_dtype: str = "uint8",
    dynamo: bool = True,
) -> Path:
    """Write ``model`` with its pre- and post-processing and metadata as one ONNX file."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = DeployGraph(model, info["mean"], info["std"], flip, probabilities).eval()
    bands = int(info.get("in_channels", 3))
    export_graph(graph, path, bands, input_dtype, dynamo)
    proto = onnx.load(str(path))
    outputs = [o.name for o in proto.graph.output]
    onnx.helper.set_model_props(proto, metadata(info, flip, outputs, input_dtype))
    onnx.save(proto, str(path))
    return path


def torch_classes(graph: DeployGraph, pixels: np.ndarray) -> np.ndarray:
    """The graph's class map in PyTorch, for parity: ``(N, H, W, C)`` -> ``(N, H, W)``."""
    with torch.inference_mode():
        return graph(torch.from_numpy(pixels))[0].numpy()


def check_parity(graph: DeployGraph, path: Path, sizes: list[tuple[int, int]], bands: int):
    """Share of pixels where onnxruntime's and PyTorch's class maps differ, over ``sizes``."""
    rng, runner, differ, total = np.random.default_rng(0), session(path), 0, 0
    dtype = runner.get_inputs()[0].type
    for h, w in sizes:
        pixels = rng.integers(0, 256, (1, h, w, bands)).astype(np.uint8)
        given = pixels if "uint8" in dtype else pixels.astype(np.float32)
        got = runner.run(["classes"], {"images": given})[0]
        differ += int((got != torch_classes(graph, pixels)).sum())
        total += h * w
    return differ / total


def card(path: Path, info: dict, flip: bool, input_dtype: str, quantized: dict | None) -> str:
    """The Markdown model card written beside ``path``: contract, classes, training, int8."""
    info = with_defaults(info)
    facts = info["class_names"]
    bands = int(info.get("in_channels", 3))
    rows = "\n".join(
        f"| {i} | {name} | {tuple(info['palette'][i])} |" for i, name in enumerate(facts)
    )
    training = "\n".join(f"- `{k}`: `{v}`" for k, v in training_summary(info).items())
    lines = [
        f"# {path.stem}",
        "",
        "Semantic segmentation, exported by `seg`'s export.py as one self-contained ONNX model.",
        "",
        "## Use",
        "",
        f"- input `images`: `(N, H, W, {bands})` {input_dtype}, pixels on the 0..255 scale "
        f"(16-bit imagery divided by 257), any H and W;",
        "- output `classes`: `(N, H, W)` uint8 class indices; `probabilities` (when exported): "
        "`(N, K, H, W)` float32;",
        f"- inside: /255, mean {list(info['mean'])}, std {list(info['std'])}, padding to a "
        f"multiple of 32 and crop back, {'horizontal flip TTA, ' if flip else ''}argmax.",
        "",
        "```python",
        "import onnxruntime, numpy as np",
        f"session = onnxruntime.InferenceSession('{path.name}')",
        "classes = session.run(['classes'], {'images': image[None]})[0][0]  # image: (H, W, C)",
        "```",
        "",
        "or `python predict.py runtime=onnx ckpt_path=<this file> input=<image or GeoTIFF>`.",
        "The facts below are also JSON strings in the model's `metadata_props` (`seg.*`).",
        "",
        "## Classes",
        "",
        "| index | class | colour (RGB) |",
        "|---|---|---|",
        rows,
        "",
        "## Training",
        "",
        training,
    ]
    if quantized:
        lines += ["", "## int8", "", int8_paragraph(quantized)]
    return "\n".join(lines) + "\n"


def int8_paragraph(quantized: dict) -> str:
    """The card's int8 section: the file, its calibration and both scores."""
    return (
        f"`{quantized['file']}`: static QDQ quantisation (per-channel int8 weights, uint8 "
        f"activations) calibrated on {quantized['calibration_images']} training images. "
        f"mIoU on {quantized['images']} labelled images: fp32 {quantized['fp32_mIoU']:.2f}, "
        f"int8 {quantized['int8_mIoU']:.2f} (drop {quantized['drop']:.2f} points)."
    )
