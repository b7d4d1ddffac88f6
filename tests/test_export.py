"""``export.py``: format checks and the exporters (the deployable graph: tests/test_deploy.py)."""

import numpy as np
import pytest
from conftest import compose, require
from test_evaluate import write_checkpoint

from seg.config import ConfigError

# Skipped where the export extra is missing, but a failure under CI=true.
require("onnxruntime", "pip install -e '.[export]'")
require("onnxscript", "pip install -e '.[export]'")

from export import export  # noqa: E402
from seg.deploy.runtime import DeployedModel  # noqa: E402


@pytest.mark.slow  # torch's dynamo exporter takes about 30 s for the tiny network here
def test_dynamo_export_matches_pytorch_at_sizes_not_multiples_of_32(tmp_path):
    ckpt = write_checkpoint(tmp_path / "random.ckpt", num_classes=5, seed=0)
    out = export(compose("export", [f"ckpt_path={ckpt}"], tmp_path / "out"))
    (path,) = out["exported"]
    assert path.endswith("random.onnx") and out["exported"][path]["differing_pixels"] == 0
    model = DeployedModel(path)
    for shape in [(64, 96, 3), (50, 75, 3)]:  # 50 x 75 is padded to 64 x 96 inside
        pixels = np.random.default_rng(1).integers(0, 256, shape).astype(np.uint8)
        assert model.classes(pixels).shape == shape[:2]


def test_unknown_input_dtype_names_the_valid_ones(tmp_path):
    ckpt = write_checkpoint(tmp_path / "random.ckpt", num_classes=5, seed=0)
    cfg = compose("export", [f"ckpt_path={ckpt}", "input_dtype=int16"], tmp_path / "out")
    with pytest.raises(ConfigError, match="use uint8 or float32"):
        export(cfg)
