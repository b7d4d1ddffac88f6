"""export.py's self-contained ONNX model and predict.py's onnxruntime path (runtime=onnx)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, SHIPPED_VOC, compose, require
from PIL import Image
from test_evaluate import write_checkpoint

require("onnxruntime", "pip install -e '.[export]'")
onnx = require("onnx", "pip install -e '.[export]'")

from export import export  # noqa: E402
from predict import TorchModel, predict  # noqa: E402
from seg.deploy.runtime import DeployedModel, ForeignModelError  # noqa: E402
from seg.errors import ChannelError  # noqa: E402

FAST = ["exporter=torchscript"]  # the dynamo exporter gives the same graph in about 30 s


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A random 5-class network with flip TTA (eval_flip) as a checkpoint and its ONNX model."""
    tmp = tmp_path_factory.mktemp("exported")
    ckpt = write_checkpoint(tmp / "random.ckpt", num_classes=5, seed=0, eval_flip=True)
    out = export(compose("export", [f"ckpt_path={ckpt}", *FAST], tmp / "out"))
    (path,) = out["exported"]
    return ckpt, tmp / "out" / "random.onnx", out["exported"][path]


def test_metadata_and_card_round_trip_the_checkpoints_facts(exported):
    ckpt, path, result = exported
    assert result["differing_pixels"] == 0
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}
    assert meta["seg.format"] == "seg-onnx/1"
    assert meta["seg.class_names"] == ["background", "aeroplane", "bicycle", "bird", "boat"]
    assert meta["seg.palette"][1] == [128, 0, 0] and len(meta["seg.palette"]) == 5
    assert meta["seg.mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert meta["seg.std"] == pytest.approx([0.229, 0.224, 0.225])
    assert meta["seg.bands"] == 3 and meta["seg.flip"] is True
    assert meta["seg.outputs"] == ["classes", "probabilities"]
    assert meta["seg.training"] | {} == meta["seg.training"]
    assert meta["seg.training"]["arch"] == "fcn32s" and meta["seg.training"]["step"] == 10
    model = DeployedModel(path)
    assert model.class_names == meta["seg.class_names"] and model.bands == 3
    card = path.with_suffix(".md").read_text()
    assert "| 4 | boat | (0, 0, 128) |" in card and "horizontal flip TTA" in card


def test_uint8_images_of_any_size_give_classes_and_probabilities(exported):
    model = DeployedModel(exported[1])
    pixels = np.random.default_rng(0).integers(0, 256, (2, 37, 61, 3)).astype(np.uint8)
    classes, probs = model.session.run(None, {"images": pixels})
    assert classes.shape == (2, 37, 61) and classes.dtype == np.uint8
    assert probs.shape == (2, 5, 37, 61)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    np.testing.assert_array_equal(classes, probs.argmax(1))


def test_class_maps_equal_predict_torch_path_on_real_images_where_not_tied(exported, tmp_path):
    """Pixel for pixel on the shipped VOC photos, ignoring pixels whose top two logits tie."""
    ckpt, path, _ = exported
    images = SHIPPED_VOC / "JPEGImages"
    for name, model in (("torch", ckpt), ("onnx", path)):
        predict(compose("predict", [f"ckpt_path={model}", f"input={images}"], tmp_path / name))
    torch_model = TorchModel(compose("predict", [f"ckpt_path={ckpt}", "input=x"], tmp_path), ckpt)
    compared = 0
    for file in sorted(images.glob("*.jpg"))[:6]:
        a = np.array(Image.open(tmp_path / "torch" / "predict" / f"{file.stem}.png"))
        b = np.array(Image.open(tmp_path / "onnx" / "predict" / f"{file.stem}.png"))
        logits = np.sort(torch_model.scores(torch_model.read(file)), axis=0)
        clear = logits[-1] - logits[-2] > 1e-4
        assert len(np.unique(a)) > 1 and clear.mean() > 0.99
        np.testing.assert_array_equal(a[clear], b[clear])
        compared += int(clear.sum())
    assert compared > 500_000


def test_onnx_path_never_imports_torch(exported, tmp_path):
    image = next((SHIPPED_VOC / "JPEGImages").glob("*.jpg"))
    argv = ["predict.py", "runtime=onnx", f"ckpt_path={exported[1]}", f"input={image}",
            f"hydra.run.dir={tmp_path}", f"paths.output_dir={tmp_path}"]  # fmt: skip
    code = (
        f"import runpy, sys; sys.argv = {argv!r}\n"
        "try:\n    runpy.run_path('predict.py', run_name='__main__')\n"
        "except SystemExit as stop:\n    assert not stop.code, stop.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO TORCH')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.stdout.strip().endswith("NO TORCH"), out.stderr[-2000:]
    assert (tmp_path / "predict" / f"{image.stem}.png").is_file()
    assert (tmp_path / "predict" / f"{image.stem}_overlay.jpg").is_file()


def test_a_foreign_onnx_file_is_one_paragraph_and_exit_2(tmp_path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 4, 4])
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "g", [x], [y])
    onnx.save(helper.make_model(graph), str(tmp_path / "foreign.onnx"))
    with pytest.raises(ForeignModelError, match="not one written by this program's export.py"):
        DeployedModel(tmp_path / "foreign.onnx")
    image = next((SHIPPED_VOC / "JPEGImages").glob("*.jpg"))
    out = subprocess.run(
        [sys.executable, "predict.py", f"ckpt_path={tmp_path / 'foreign.onnx'}", f"input={image}",
         f"hydra.run.dir={tmp_path}", f"paths.output_dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.startswith("ForeignModelError: ") and "Traceback" not in out.stderr


def test_images_of_other_bands_are_refused_with_the_count(exported, tmp_path):
    pixels = np.full((40, 48, 4), 100, np.uint8)
    Image.fromarray(pixels, "RGBA").save(tmp_path / "four.png")
    cfg = compose("predict", [f"ckpt_path={exported[1]}", f"input={tmp_path / 'four.png'}"],
                  tmp_path / "out")  # fmt: skip
    with pytest.raises(ChannelError, match="has 4 bands but the model random.onnx reads 3"):
        predict(cfg)


def test_four_band_float_input_model(tmp_path):
    ckpt = write_checkpoint(tmp_path / "bands.ckpt", num_classes=3, seed=0, in_channels=4)
    cfg = compose("export", [f"ckpt_path={ckpt}", *FAST, "input_dtype=float32"], tmp_path / "o")
    out = export(cfg)
    assert next(iter(out["exported"].values()))["differing_pixels"] == 0
    model = DeployedModel(tmp_path / "o" / "bands.onnx")
    assert model.bands == 4 and model.dtype == np.float32
    assert model.classes(np.zeros((40, 56, 4), np.float32) + 1000 / 257).shape == (40, 56)
