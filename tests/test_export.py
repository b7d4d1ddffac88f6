"""``export.py``: a graph giving PyTorch's logits at any batch, height and width."""

import numpy as np
import torch
from conftest import compose, require
from test_evaluate import write_checkpoint

from seg.checkpoint import load_network

# Skipped where the export extra is missing, but a failure under CI=true.
require("onnxruntime", "pip install -e '.[export]'")
require("onnxscript", "pip install -e '.[export]'")

from export import export  # noqa: E402
from seg.export import onnx_logits  # noqa: E402


def test_onnx_logits_match_pytorch_at_sizes_not_multiples_of_32(tmp_path):
    ckpt = write_checkpoint(tmp_path / "random.ckpt", num_classes=5, seed=0)
    out = export(compose("export", [f"ckpt_path={ckpt}"], tmp_path / "out"))
    (path,) = out["exported"]
    assert path.endswith("random.onnx") and out["exported"][path] < 1e-4
    model, _ = load_network(ckpt)
    torch.manual_seed(1)
    for shape in [(1, 3, 64, 96), (2, 3, 50, 75)]:  # 50 x 75 is padded to 64 x 96 inside
        images = torch.randn(shape)
        with torch.inference_mode():
            expected = model(images).numpy()
        logits = onnx_logits(path, images.numpy())
        assert logits.shape == (shape[0], 5, *shape[2:])
        assert len(np.unique(expected.argmax(1))) > 1  # not a constant prediction
        np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4)


def test_a_four_band_network_exports_with_four_band_inputs(tmp_path):
    ckpt = write_checkpoint(tmp_path / "bands.ckpt", num_classes=3, seed=0, in_channels=4)
    overrides = [f"ckpt_path={ckpt}", "exporter=torchscript"]
    out = export(compose("export", overrides, tmp_path / "out"))
    (path,) = out["exported"]
    assert out["exported"][path] < 1e-4
    assert onnx_logits(path, np.zeros((1, 4, 40, 56), np.float32)).shape == (1, 3, 40, 56)
