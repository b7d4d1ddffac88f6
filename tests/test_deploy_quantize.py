"""export.py quantize=int8: static QDQ int8 written only within quantize.max_drop of fp32."""

import onnx
import pytest
from conftest import compose, require
from test_evaluate import write_checkpoint

require("onnxruntime", "pip install -e '.[export]'")

from export import export  # noqa: E402
from seg.config import ConfigError  # noqa: E402
from seg.deploy.quantize import QuantizationRefused  # noqa: E402
from seg.deploy.runtime import DeployedModel  # noqa: E402


def quantize(tmp_path, voc_root, *overrides):
    ckpt = write_checkpoint(tmp_path / "random.ckpt", num_classes=21, seed=0)
    options = ["exporter=torchscript", "quantize=int8", f"quantize.data_root={voc_root}"]
    return export(compose("export", [f"ckpt_path={ckpt}", *options, *overrides], tmp_path / "o"))


def test_int8_model_is_qdq_scored_against_fp32_and_quoted_by_the_card(tmp_path, voc_root):
    out = quantize(tmp_path, voc_root, "quantize.max_drop=100")
    result = next(iter(out["exported"].values()))["int8"]
    assert result["images"] == 3 and result["drop"] == result["fp32_mIoU"] - result["int8_mIoU"]
    path = tmp_path / "o" / "random.int8.onnx"
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "ArgMax"} <= ops
    assert DeployedModel(path).class_names[:2] == ["background", "aeroplane"]  # metadata kept
    card = (tmp_path / "o" / "random.md").read_text()
    assert "## int8" in card and f"int8 {result['int8_mIoU']:.2f}" in card


def test_the_guard_refuses_a_larger_drop_and_writes_nothing(tmp_path, voc_root):
    with pytest.raises(QuantizationRefused, match="more than quantize.max_drop=-100") as error:
        quantize(tmp_path, voc_root, "quantize.max_drop=-100")  # any result drops more than -100
    assert isinstance(error.value, ConfigError)  # the CLI's one paragraph and exit 2
    assert "quantize.force=true" in str(error.value)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["random.onnx"]


def test_force_writes_the_int8_model_whatever_it_loses(tmp_path, voc_root):
    quantize(tmp_path, voc_root, "quantize.max_drop=-100", "quantize.force=true")
    assert (tmp_path / "o" / "random.int8.onnx").is_file()
