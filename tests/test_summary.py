"""python -m seg.models.summary: receptive fields, strides, sizes and parameters, pinned."""

import math

import pytest
import torch
from torch import nn

from seg.models import build_model, count_parameters
from seg.models.summary import Field, main, trace

# FCN-8s over VGG16 at 21 classes, exactly; the paper (Long et al., Table 1) rounds it to 134 M.
FCN8S_VGG16_PARAMETERS = 134_489_759


@pytest.fixture(scope="module")
def vgg16_fcn8s():
    """VGG16 FCN-8s traced at 64x64 (receptive fields do not depend on the input size)."""
    torch.manual_seed(0)
    model = build_model("fcn8s", "vgg16", 21, weights=None)
    rows, flops, fields = trace(model, 64, 64)
    return model, {row["name"]: row for row in rows}, fields


def test_vgg16_receptive_fields_are_the_known_ones(vgg16_fcn8s):
    _, rows, fields = vgg16_fcn8s
    pool5 = "backbone.stages.32.0.30"  # torchvision's features[30], the last max-pool
    assert fields[pool5] == Field(212, 32)
    assert rows["backbone.stages.32"]["field"] == Field(404, 32)  # fc7: fc6's 7x7 adds 6 x 32
    by_stride = {
        int(n.rsplit(".", 1)[1]): r["field"].size for n, r in rows.items() if "stages" in n
    }
    assert by_stride == {2: 6, 4: 16, 8: 44, 16: 100, 32: 404}  # pool1 .. pool4, fc7


def test_vgg16_fcn8s_rows_give_stride_size_and_channels(vgg16_fcn8s):
    _, rows, _ = vgg16_fcn8s
    assert rows["backbone.stages.8"]["shape"] == (1, 256, 8, 8)
    assert rows["backbone.stages.32"]["shape"] == (1, 4096, 2, 2)
    assert rows["decoder.score.16"]["field"] == Field(100, 16)  # a 1x1 score keeps the field
    assert rows["decoder.up2.0"]["field"] == Field(436, 16)  # 4x4 stride 2: one more coarse step
    assert rows["decoder.up_out"]["shape"] == (1, 21, 64, 64)
    assert rows["decoder.up_out"]["field"].jump == 1


def test_vgg16_fcn8s_has_the_papers_134m_parameters(vgg16_fcn8s):
    model, rows, _ = vgg16_fcn8s
    assert count_parameters(model) == FCN8S_VGG16_PARAMETERS
    assert round(FCN8S_VGG16_PARAMETERS / 1e6) == 134
    assert sum(row["params"] for row in rows.values()) == FCN8S_VGG16_PARAMETERS


def test_field_rules_by_hand():
    """conv 3, pool 2, dilated conv 3 (d=2), transposed 4x4 s2, bilinear x2, global pool."""
    net = nn.Sequential(
        nn.Conv2d(1, 1, 3, padding=1),  # 1 + 2 = 3, jump 1
        nn.MaxPool2d(2),  # 3 + 1 = 4, jump 2
        nn.Conv2d(1, 1, 3, padding=2, dilation=2),  # 4 + 2*2*2 = 12, jump 2
        nn.ConvTranspose2d(1, 1, 4, 2, 1),  # 12 + (2 - 1) * 2 = 14, jump 1
        nn.Upsample(scale_factor=0.5, mode="bilinear"),  # 14 + 1 = 15, jump 2
    )
    model = nn.Module()
    model.backbone, model.decoder = nn.Identity(), net
    model.forward = lambda x: net(x)
    _, _, fields = trace(model, 16, 16)
    assert [fields[f"decoder.{i}"] for i in range(5)] == [
        Field(3, 1), Field(4, 2), Field(12, 2), Field(14, 1), Field(15, 2)
    ]  # fmt: skip
    squeeze = nn.Sequential(nn.Conv2d(1, 1, 1), nn.AdaptiveAvgPool2d(1))
    model.decoder = squeeze
    model.forward = lambda x: squeeze(x)
    _, _, fields = trace(model, 16, 16)
    assert math.isinf(fields["decoder.1"].size)


def test_cli_prints_every_stage(capsys):
    main(["model=fcn8s", "model.backbone=tiny", "input=50x70"])
    out = capsys.readouterr().out
    assert "one 50x70 image (padded to 64x96)" in out
    lines = out.splitlines()
    assert lines[2].split()[:3] == ["stage", "stride", "size"]
    assert any(line.split()[:4] == ["backbone.stages.32", "32", "2x3", "64"] for line in lines)
    total = build_model("fcn8s", "tiny", 21)
    assert lines[-1].split()[1] == f"{count_parameters(total) / 1e6:.2f}"


@pytest.mark.parametrize(
    ("argument", "names"),
    [
        ("model=fcn9s", ["fcn32s", "fcn16s", "fcn8s", "unet"]),
        ("model.backbone=vgg17", ["vgg16", "resnet18", "mobilenet_v3_large", "timm:<name>"]),
        ("inputs=500x500", ["model", "model.backbone", "input"]),
    ],
)
def test_unknown_names_exit_2_with_the_valid_ones(argument, names, capsys):
    with pytest.raises(SystemExit) as stop:
        main([argument])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("ConfigError: ") and "\n\n" not in err and "Traceback" not in err
    assert all(name in err for name in names)
