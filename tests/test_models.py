"""seg.models: shapes for every pair, bilinear deconvolution, fc -> conv, staged init, weights."""

import functools
import logging

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from seg.errors import WeightsUnavailableError
from seg.models import (
    BACKBONES,
    DECODERS,
    SegmentationModel,
    build_model,
    count_parameters,
    load_matching_state,
)
from seg.models import weights as weights_module
from seg.models.backbones import VGG16Backbone
from seg.models.layers import UpConv, bilinear_kernel, bilinear_upsample, linear_to_conv

PAIRS = [(b, a) for b in BACKBONES for a in DECODERS if not (b == "unet" and a != "unet")]
RESNET18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


@functools.cache  # each backbone is built once for this file (vgg16 alone takes seconds)
def cached_backbone(name: str) -> nn.Module:
    torch.manual_seed(0)
    return BACKBONES[name]()


@pytest.fixture(scope="module", autouse=True)
def free_cached_backbones():
    yield
    cached_backbone.cache_clear()


def randomise_scores(model: SegmentationModel, std: float = 0.1) -> SegmentationModel:
    """Fresh FCN score layers are zero (logits exactly 0): give them random weights.

    A U-Net's random classifier bias can outweigh its spatial variation: zero it.
    """
    for score in getattr(model.decoder, "score", {}).values():
        nn.init.normal_(score.weight, std=std)
        nn.init.normal_(score.bias, std=std)
    if hasattr(model.decoder, "classifier"):
        nn.init.zeros_(model.decoder.classifier.bias)
    return model


@pytest.mark.parametrize(("backbone", "arch"), PAIRS)
def test_every_pair_gives_input_size_logits_and_gradients(backbone: str, arch: str):
    encoder = cached_backbone(backbone)
    torch.manual_seed(0)
    model = randomise_scores(SegmentationModel(encoder, DECODERS[arch](encoder.channels, 5)))
    model.train()
    # oneDNN's backward of VGG16's fc6 (a 7x7 convolution from 512 to 4096 channels) over the 2x2
    # map of these inputs takes about a minute on an AVX2-only CPU and 2 s without it; the test
    # is about shapes and gradients, not kernels. fc6's weight gradient dominates VGG16's time,
    # so it takes one odd-sized image (padded to 64x64 inside); the other backbones check the
    # batch dimension and an even size as well.
    vgg = backbone == "vgg16"
    n, sizes = (1, [(37, 61)]) if vgg else (2, [(64, 64), (37, 61)])
    for h, w in sizes:  # even; odd, padded to 64x64 inside
        model.zero_grad(set_to_none=True)
        with torch.backends.mkldnn.flags(enabled=not vgg):
            logits = model(torch.randn(n, 3, h, w))
            assert logits.shape == (n, 5, h, w)
            F.cross_entropy(logits, torch.randint(0, 5, (n, h, w))).backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        norms = {n: 0 if g is None else torch.linalg.vector_norm(g, 1) for n, g in grads.items()}
        bad = [n for n, norm in norms.items() if not 0 < norm < float("inf")]  # one pass each
        assert not bad, f"no or non-finite gradient reaches {bad[:5]}"
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_backbone_features_follow_their_channels_and_strides(name: str):
    encoder = cached_backbone(name).eval()
    with torch.no_grad():
        features = encoder(torch.randn(1, 3, 64, 96))
    assert sorted(features) == sorted(encoder.channels)
    for stride, x in features.items():
        assert x.shape == (1, encoder.channels[stride], 64 // stride, 96 // stride)


def test_vgg16_fcn8s_has_the_papers_size_and_freezes_its_upsampler():
    encoder = cached_backbone("vgg16")
    model = SegmentationModel(encoder, DECODERS["fcn8s"](encoder.channels, 21))
    assert count_parameters(model) == 134_489_759  # ~134.5 M, as in the FCN paper
    frozen = SegmentationModel(encoder, DECODERS["fcn8s"](encoder.channels, 21, True))
    assert not frozen.decoder.up_out.weight.requires_grad
    assert count_parameters(frozen, trainable_only=True) == 134_489_759 - 21 * 21 * 16 * 16


def test_bn_momentum_reaches_every_batch_norm_and_none_keeps_the_backbones_own():
    def momenta(model) -> set:
        return {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}

    assert momenta(build_model("fcn8s", "mobilenet_v3_large", 3)) == {0.01}  # torchvision's
    assert momenta(build_model("fcn8s", "mobilenet_v3_large", 3, bn_momentum=0.1)) == {0.1}
    assert momenta(build_model("unet", "resnet18", 3, bn_momentum=0.3)) == {0.3}  # decoder too


def test_unet_over_unet_is_the_papers_network():
    model = build_model("unet", "unet", 2)
    ups = [(up.in_channels, up.out_channels, up.kernel_size) for up in model.decoder.up]
    assert ups == [(1024, 512, (2, 2)), (512, 256, (2, 2)), (256, 128, (2, 2)), (128, 64, (2, 2))]
    # by hand: encoder sum of 9*i*o + 9*o*o + 4*o (bias-free convs, two BNs) over
    # (3,64) ... (512,1024); decoder 4*i*o + o per up-conv plus the same blocks; 1x1 head 64*2 + 2
    assert count_parameters(model) == 31_037_698


@pytest.mark.parametrize(("backbone", "arch"), [("tiny", "fcn8s"), ("resnet18", "unet")])
def test_logits_do_not_depend_on_the_batch(backbone: str, arch: str):
    torch.manual_seed(0)
    model = randomise_scores(build_model(arch, backbone, 4)).eval()
    images = torch.randn(3, 3, 45, 70)
    with torch.no_grad():
        batch = model(images)
        alone = model(images[1:2])
    torch.testing.assert_close(batch[1:2], alone, atol=1e-5, rtol=1e-5)
    assert batch.std() > 0 and batch.argmax(1).unique().numel() > 1  # not a constant prediction


def test_bilinear_kernel_known_answer():
    taps = torch.tensor([0.25, 0.75, 0.75, 0.25], dtype=torch.float64)
    torch.testing.assert_close(bilinear_kernel(2), torch.outer(taps, taps))


@pytest.mark.parametrize("factor", [2, 8, 32])
def test_bilinear_deconvolution_equals_interpolate(factor: int):
    up = bilinear_upsample(3, factor).double()
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        out = up(x)
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert out.shape == (2, 3, 5 * factor, 7 * factor)
    f = factor  # the border differs: interpolate clamps, the deconvolution pads with zeros
    torch.testing.assert_close(out[..., f:-f, f:-f], ref[..., f:-f, f:-f], atol=1e-9, rtol=0)


def test_fcn_upsamplers_run_in_fp32_under_cpu_autocast():
    torch.manual_seed(0)
    model = build_model("fcn8s", "tiny", 5, weights=None).eval()
    for p in model.decoder.parameters():  # score layers start at zero: make the logits non-zero
        p.data.normal_(0, 0.1)
    images = torch.randn(1, 3, 64, 96)
    seen = []
    for m in model.modules():
        if isinstance(m, UpConv):
            m.register_forward_hook(lambda m, inp, out: seen.append((inp[0].dtype, out.dtype)))
    with torch.no_grad():
        expected = model(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(images)
    assert seen[:3] == [(torch.float32, torch.float32)] * 3  # x2, x2, x8 outside autocast
    assert [out for _, out in seen[3:]] == [torch.float32] * 3  # computed in fp32 under autocast
    assert seen[3][0] == torch.bfloat16  # the first one's input is a bf16 score map
    assert logits.dtype == torch.float32
    assert expected.abs().mean() > 0.01
    torch.testing.assert_close(logits, expected, atol=0.05, rtol=0.05)


def test_linear_equals_convolution_over_its_whole_input():
    torch.manual_seed(0)
    linear = nn.Linear(2 * 3 * 3, 5)
    x = torch.randn(4, 2, 3, 3)
    conv_out = linear_to_conv(linear, 2, 3)(x)  # (4, 5, 1, 1)
    torch.testing.assert_close(conv_out.flatten(1), linear(x.flatten(1)))
    with pytest.raises(ValueError, match="cannot become a 5x5"):
        linear_to_conv(linear, 2, 5)


def test_vgg16_fc7_convolution_equals_torchvision_classifier():
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16().eval()
    encoder = VGG16Backbone(vgg).eval()
    fc = encoder.stages["32"][-1]
    assert fc[0].weight.shape == (4096, 512, 7, 7) and fc[3].weight.shape == (4096, 4096, 1, 1)
    assert [m.p for m in fc if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        fc7 = encoder(x)[32]  # (1, 4096, 7, 7): fc6 padded by 3 keeps pool5's 7x7 size
        expected = vgg.classifier[:-1](torch.flatten(vgg.avgpool(vgg.features(x)), 1))
    assert fc7.shape == (1, 4096, 7, 7)
    # at the centre, fc6's 7x7 kernel covers the whole pool5 map without padding
    torch.testing.assert_close(fc7[:, :, 3, 3], expected, atol=1e-5, rtol=1e-5)
    assert expected.abs().max() > 1e-2  # the comparison is not between near-zero activations


STAGES = [  # (source arch, target arch, the target's new skip stride, its new x2 upsampler)
    ("fcn32s", "fcn16s", 16, "decoder.up2.0.weight"),
    ("fcn16s", "fcn8s", 8, "decoder.up2.1.weight"),
]


@pytest.mark.parametrize(("source_arch", "arch", "new", "new_up2"), STAGES)
def test_staged_init_copies_shared_tensors_and_new_skips_add_nothing(
    tmp_path, source_arch: str, arch: str, new: int, new_up2: str
):
    torch.manual_seed(0)
    torch.save(
        randomise_scores(build_model(source_arch, "tiny", 6)).state_dict(), tmp_path / "s.pt"
    )
    source = torch.load(tmp_path / "s.pt", weights_only=True)
    model = build_model(arch, "tiny", 6)
    loaded, skipped = load_matching_state(model, source)
    assert set(skipped) == {
        f"decoder.score.{new}.weight",
        f"decoder.score.{new}.bias",
        new_up2,  # stays bilinear
        "decoder.up_out.weight",  # a finer final upsampler: another kernel size
    }
    state = model.state_dict()
    assert set(loaded) == set(source) - {"decoder.up_out.weight"}
    assert all(torch.equal(state[k], source[k]) for k in loaded)
    assert not state[f"decoder.score.{new}.weight"].any()

    model.eval()
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        logits = model(images)
        d, features = model.decoder, model.backbone(images)
        x = d.score["32"](features[32])  # the decoder's forward without the new skip branch
        for stride, up in zip(d.skip_strides, d.up2, strict=True):
            x = up(x) + (0 if stride == new else d.score[str(stride)](features[stride]))
        without_skip = d.up_out(x)
    torch.testing.assert_close(logits, without_skip, atol=1e-6, rtol=1e-6)
    assert logits.std() > 0


def test_load_matching_state_skips_a_head_with_another_class_count():
    voc, camvid = build_model("fcn8s", "tiny", 21), build_model("fcn8s", "tiny", 11)
    loaded, skipped = load_matching_state(camvid, voc.state_dict())
    assert set(skipped) == {k for k in camvid.state_dict() if k.startswith("decoder.")}
    assert all(k in loaded for k in voc.state_dict() if k.startswith("backbone."))


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match="fcn32s, fcn16s, fcn8s, unet"):
        build_model("fcn4s", "tiny", 21)
    with pytest.raises(ValueError, match=", ".join(BACKBONES)):
        build_model("fcn8s", "vgg19", 21)
    with pytest.raises(ValueError, match=r"strides \[32, 16, 8\].*missing \[32\]"):
        build_model("fcn8s", "unet", 21)
    assert list(DECODERS) == ["fcn32s", "fcn16s", "fcn8s", "unet"]


def test_local_torchvision_state_dict_is_loaded(tmp_path):
    torch.manual_seed(1)
    resnet = torchvision.models.resnet18()
    nn.init.normal_(resnet.bn1.running_mean)  # not the default zeros: its arrival is visible
    torch.save(resnet.state_dict(), tmp_path / "resnet18.pth")
    model = build_model("fcn8s", "resnet18", 21, weights=str(tmp_path / "resnet18.pth"))
    stem, layer4 = model.backbone.stages["4"], model.backbone.stages["32"]
    assert torch.equal(stem[0].weight, resnet.conv1.weight)
    assert torch.equal(stem[1].running_mean, resnet.bn1.running_mean)
    assert torch.equal(layer4[1].conv2.weight, resnet.layer4[1].conv2.weight)


def test_own_backbone_state_dict_round_trips(tmp_path):
    torch.manual_seed(2)
    model = build_model("unet", "tiny", 3)
    torch.save(model.backbone.state_dict(), tmp_path / "tiny.pt")
    again = build_model("unet", "tiny", 3, weights=str(tmp_path / "tiny.pt"))
    assert all(
        torch.equal(a, b)
        for a, b in zip(*(m.backbone.state_dict().values() for m in (model, again)), strict=True)
    )


def test_wrong_or_missing_local_file(tmp_path, caplog):
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(ValueError, match="not a torchvision-format state dict of resnet18"):
        build_model("fcn8s", "resnet18", 21, weights=str(tmp_path / "resnet34.pth"))
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(
        WeightsUnavailableError, match=r"nowhere\.pth does not exist.*model\.weights="
    ):
        build_model("fcn8s", "resnet18", 21, weights=str(missing))
    with caplog.at_level(logging.WARNING):
        build_model("fcn8s", "resnet18", 21, weights=str(missing), weights_required=False)
    assert len(caplog.records) == 1 and "random init" in caplog.records[0].getMessage()


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub cache and no network: any download attempt fails the test."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(weights_module, "unreachable", lambda url: "Network is unreachable")

    def no_download(*args, **kwargs):
        raise AssertionError("tests must not download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    return tmp_path


def test_imagenet_weights_come_from_the_hub_cache(offline_hub):
    torch.manual_seed(3)
    resnet = torchvision.models.resnet18()
    (offline_hub / "checkpoints").mkdir()
    torch.save(resnet.state_dict(), offline_hub / "checkpoints" / RESNET18_URL.split("/")[-1])
    model = build_model("fcn32s", "resnet18", 21, weights="imagenet")
    assert torch.equal(model.backbone.stages["32"][0].conv1.weight, resnet.layer4[0].conv1.weight)


def test_unavailable_imagenet_weights_raise_or_warn_once(offline_hub, caplog):
    with pytest.raises(WeightsUnavailableError, match=f"{RESNET18_URL}.*model.weights=/path/to/"):
        build_model("fcn8s", "resnet18", 21, weights="imagenet")
    with caplog.at_level(logging.WARNING):
        build_model("fcn8s", "resnet18", 21, weights="imagenet", weights_required=False)
    [record] = caplog.records
    message = record.getMessage()
    assert "ImageNet weights are unavailable" in message and "random init" in message
    assert "\n" not in message


@pytest.mark.parametrize("backbone", ["unet", "tiny"])
def test_backbones_without_imagenet_weights(backbone: str, caplog):
    with pytest.raises(
        WeightsUnavailableError, match=f"no ImageNet weights|unavailable for {backbone}"
    ):
        build_model("unet", backbone, 2, weights="imagenet")
    with caplog.at_level(logging.WARNING):
        build_model("unet", backbone, 2, weights="imagenet", weights_required=False)
    assert len(caplog.records) == 1 and "random init" in caplog.records[0].getMessage()
