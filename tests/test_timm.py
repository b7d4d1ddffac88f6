"""timm backbones: the menu under every decoder at odd sizes, ViTs, weights and bands, names."""

import json
import logging

import pytest
import timm
import torch
from safetensors.torch import save_file

from seg.config import validate
from seg.errors import ConfigError, WeightsUnavailableError
from seg.models import BACKBONES, DECODERS, SegmentationModel, build_model
from seg.models import timm as timm_backbones

CNNS = {  # the tested menu and the strides each claims
    "timm:resnet50d": [2, 4, 8, 16, 32],
    "timm:convnext_tiny": [4, 8, 16, 32],
    "timm:efficientnet_b0": [2, 4, 8, 16, 32],
    "timm:regnety_016": [2, 4, 8, 16, 32],
    "timm:mobilenetv4_conv_small": [2, 4, 8, 16, 32],
}
VITS = ["timm:vit_small_patch14_dinov2", "timm:vit_small_patch16_224"]
SMALL = "timm:mobilenetv4_conv_small"  # 1.3 M parameters: the one to load weights into


def check_features(backbone, strides: list[int], size=(64, 96)) -> None:
    """Features at exactly the claimed strides, each (1, channels[s], H/s, W/s)."""
    features = backbone(torch.randn(1, 3, *size))
    assert sorted(features) == sorted(backbone.channels) == strides
    for s, feature in features.items():
        assert feature.shape == (1, backbone.channels[s], size[0] // s, size[1] // s), s


@pytest.mark.parametrize("name", CNNS)
def test_a_menu_cnn_under_every_decoder_gives_exact_shapes_at_an_odd_size(name):
    torch.manual_seed(0)
    backbone = BACKBONES[name](weights=None).eval()
    with torch.no_grad():
        check_features(backbone, CNNS[name])
    images = torch.randn(1, 3, 65, 97)
    for arch, decoder in DECODERS.items():
        model = SegmentationModel(backbone, decoder(backbone.channels, 3)).eval()
        with torch.no_grad():
            assert model(images).shape == (1, 3, 65, 97), arch
    model.train()(images[..., :33, :47]).sum().backward()  # U-Net: gradients reach the stem
    assert all(p.grad is not None for p in backbone.parameters())


@pytest.mark.parametrize("name", VITS)
def test_a_vit_gives_a_pyramid_at_strides_4_to_32_and_exact_shapes_at_any_size(name):
    torch.manual_seed(0)
    backbone = BACKBONES[name](weights=None).eval()
    with torch.no_grad():
        check_features(backbone, [4, 8, 16, 32], size=(64, 64))
    for arch in ("fcn8s", "unet"):
        model = SegmentationModel(backbone, DECODERS[arch](backbone.channels, 3)).eval()
        for size in [(56, 56), (45, 61)]:  # other token grids than the pretraining one
            with torch.no_grad():
                assert model(torch.randn(1, 3, *size)).shape == (1, 3, *size), (arch, size)


def test_grey_and_four_band_inputs_adapt_the_first_convolution_of_a_local_file(tmp_path):
    source = timm.create_model(SMALL.removeprefix("timm:"))
    file = tmp_path / "weights.safetensors"
    save_file(source.state_dict(), file)
    rgb = source.conv_stem.weight  # (32, 3, 3, 3)
    grey = build_model("fcn8s", SMALL, 3, weights=str(file), in_channels=1)
    assert torch.equal(grey.backbone.model.conv_stem.weight, rgb.sum(1, keepdim=True))
    bands = build_model("unet", SMALL, 3, weights=str(file), in_channels=4)
    torch.testing.assert_close(bands.backbone.model.conv_stem.weight, rgb[:, [0, 1, 2, 0]] * 0.75)
    assert bands(torch.randn(1, 4, 33, 47)).shape == (1, 3, 33, 47)
    with pytest.raises(WeightsUnavailableError, match="could not be loaded into timm:resnet50d"):
        build_model("fcn8s", "timm:resnet50d", 3, weights=str(file))  # another model's file


def test_imagenet_offline_is_one_clear_error_or_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(timm_backbones, "unreachable", lambda url: "no network")
    with pytest.raises(WeightsUnavailableError) as error:
        build_model("fcn8s", SMALL, 3, weights="imagenet")
    message = str(error.value)
    assert "timm/mobilenetv4_conv_small.e2400_r224_in1k" in message  # timm's pretrained tag
    assert "model.weights=/path/to/model.safetensors" in message and "\n" not in message
    with caplog.at_level(logging.WARNING):
        build_model("fcn8s", SMALL, 3, weights="imagenet", weights_required=False)
    assert "training starts from random init" in caplog.text
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        build_model("fcn8s", SMALL, 3, weights="/nowhere/weights.safetensors")


def test_imagenet_from_the_hugging_face_cache_needs_no_network(monkeypatch, tmp_path):
    source = timm.create_model(SMALL.removeprefix("timm:"))
    save_file(source.state_dict(), tmp_path / "model.safetensors")
    cached = str(tmp_path / "model.safetensors")
    monkeypatch.setattr(timm_backbones.huggingface_hub, "try_to_load_from_cache", lambda *a: cached)
    monkeypatch.setattr(timm_backbones, "unreachable", lambda url: pytest.fail("probed " + url))
    model = build_model("fcn8s", SMALL, 3, weights="imagenet")
    assert torch.equal(model.backbone.model.conv_stem.weight, source.conv_stem.weight)


def test_timm_names_pass_validation_and_unknown_ones_are_refused():
    assert "timm:efficientnet_b0" in BACKBONES and "timm:resnet50d.a1_in1k" in BACKBONES
    assert "timm:no_such_net" not in BACKBONES and "resnet50d" not in BACKBONES
    assert "timm:efficientnet_b0" not in list(BACKBONES)  # iteration: the named builders
    validate({"model": {"arch": "unet", "backbone": "timm:efficientnet_b0"}})
    with pytest.raises(ConfigError, match="model.backbone='timm:no_such_net'"):
        validate({"model": {"arch": "unet", "backbone": "timm:no_such_net"}})
    with pytest.raises(ValueError, match="timm:<name>"):
        build_model("fcn8s", "timm:no_such_net", 3)


def test_the_menu_benchmark_writes_its_table(tmp_path):
    from benchmarks import backbones

    out = tmp_path / "backbones.json"
    args = ["--backbones", "resnet18", SMALL, "--crop", "64", "64", "--warmup", "0", "--iters", "1"]
    backbones.main([*args, "--out", str(out)])
    (rows,) = json.loads(out.read_text())["tables"].values()
    assert [r["backbone"] for r in rows] == ["resnet18", SMALL]
    assert rows[1]["pretrained"] == "e2400_r224_in1k" and rows[1]["strides"] == "2-32"
    assert all(r["train img/s"] > 0 and r["infer GFLOP/img"] > 0 for r in rows)
    docs = tmp_path / "backbones.md"
    docs.write_text(f"# Menu\n\n{backbones.MARKS[0]}\nold table\n{backbones.MARKS[1]}\n\nAfter.\n")
    backbones.render(out, docs)
    text = docs.read_text()
    assert "old table" not in text and f"| {SMALL} | timm | 2-32 |" in text
    assert "load_avg" in text and text.endswith("\n\nAfter.\n")
