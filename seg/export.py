"""ONNX export of a segmentation network with dynamic batch, height and width.

The graph takes ``images`` float32 ``(N, C, H, W)`` (C: the checkpoint's ``in_channels``),
normalised with the checkpoint's mean/std, and returns ``logits`` ``(N, num_classes, H, W)``
for any ``H, W``: the padding to a multiple of 32 and the crop back are part of the graph.
torch's default (dynamo) exporter handles that shape arithmetic symbolically; it needs the
``export`` extra (onnx, onnxscript, onnxruntime). The older TorchScript exporter
(``dynamo=False``) also keeps the sizes dynamic and matches as closely; it exports faster (under
a second against about 10 s for the tiny test network on 2 CPU cores) but is deprecated in
torch.
"""

from pathlib import Path

import numpy as np
import torch
from torch import nn

SAMPLE_SIZE = (64, 96)  # traced once at this size; every dimension stays dynamic


def export_onnx(model: nn.Module, path: str | Path, dynamo: bool = True, channels: int = 3) -> Path:
    """Write ``model`` as ONNX; ``dynamo=False`` picks torch's older TorchScript exporter."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sample = torch.randn(1, channels, *SAMPLE_SIZE)
    names = {"input_names": ["images"], "output_names": ["logits"]}
    model = model.eval()
    if dynamo:
        dim = torch.export.Dim
        shapes = {"images": {0: dim("batch"), 2: dim("height"), 3: dim("width")}}
        torch.onnx.export(model, (sample,), path, dynamo=True, dynamic_shapes=shapes, **names)
    else:
        axes = {name: {0: "batch", 2: "height", 3: "width"} for name in ("images", "logits")}
        torch.onnx.export(model, (sample,), path, dynamo=False, dynamic_axes=axes, **names)
    return path


def onnx_logits(path: str | Path, images: np.ndarray) -> np.ndarray:
    """Run an exported model with onnxruntime on the CPU: ``(N, C, H, W)`` -> logits."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"images": images.astype(np.float32)})[0]


def check_parity(
    model: nn.Module, path: str | Path, sizes: list[tuple[int, int]], channels: int = 3
) -> float:
    """Largest absolute difference between PyTorch's and onnxruntime's logits over ``sizes``."""
    worst = 0.0
    for h, w in sizes:
        images = torch.randn(1, channels, h, w)
        with torch.inference_mode():
            expected = model.eval()(images).numpy()
        worst = max(worst, float(np.abs(onnx_logits(path, images.numpy()) - expected).max()))
    return worst
