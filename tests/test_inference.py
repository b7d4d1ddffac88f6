"""Whole-image, flip, multi-scale and sliding-window logits: equal where they must be."""

import pytest
import torch
from torch import nn

from seg.data.reading import read_normalised
from seg.inference import infer, sliding_window, window_starts
from seg.models import build_model


def mirror_symmetric(conv: nn.Conv2d) -> nn.Conv2d:
    """Make a stride-1, centred convolution commute with a horizontal flip."""
    with torch.no_grad():
        conv.weight.copy_((conv.weight + conv.weight.flip(-1)) / 2)
    return conv


def small_net(symmetric: bool) -> nn.Module:
    """A stride-1 network with a 5x5 receptive field: 3 channels in, 4 classes out."""
    torch.manual_seed(0)
    convs = [nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)]
    if symmetric:
        convs = [mirror_symmetric(c) for c in convs]
    return nn.Sequential(convs[0], nn.ReLU(), convs[1]).eval()


def random_tiny_fcn(num_classes: int = 5) -> nn.Module:
    """A tiny FCN-8s whose zero-initialised score layers are randomised (fresh logits are all 0)."""
    torch.manual_seed(0)
    model = build_model("fcn8s", "tiny", num_classes, weights=None)
    for score in model.decoder.score.values():
        nn.init.normal_(score.weight, std=2.0)
        nn.init.zeros_(score.bias)
    return model.eval()


def test_window_starts_tile_the_image_with_the_last_window_flush():
    assert window_starts(10, 4, 3) == [0, 3, 6]
    assert window_starts(11, 4, 3) == [0, 3, 6, 7]
    assert window_starts(4, 4, 2) == [0]
    assert window_starts(3, 8, 2) == [0]


def test_flip_tta_equals_plain_inference_for_a_mirror_symmetric_model():
    images = torch.randn(2, 3, 17, 23)
    model = small_net(symmetric=True)
    with torch.inference_mode():
        plain = infer(model, images)
        flipped = infer(model, images, flip=True)
        asymmetric = small_net(symmetric=False)
        other = (infer(asymmetric, images), infer(asymmetric, images, flip=True))
    torch.testing.assert_close(flipped, plain, rtol=0, atol=1e-5)
    # the check can fail: for a model that is not mirror-symmetric flip TTA changes the logits
    assert (other[0] - other[1]).abs().max() > 1e-2


def test_a_window_covering_the_image_equals_whole_image_inference():
    model = random_tiny_fcn()
    images = torch.randn(1, 3, 40, 56)
    with torch.inference_mode():
        whole = infer(model, images)
        windowed = infer(model, images, window=[64, 64], stride=32)
        tiled = infer(model, images, window=32, stride=16)
    assert whole.argmax(1).unique().numel() > 1  # predictions are not constant
    torch.testing.assert_close(windowed, whole, rtol=0, atol=0)
    assert tiled.shape == whole.shape and not torch.allclose(tiled, whole)


def test_overlapping_windows_average_to_the_whole_image_for_a_pointwise_model():
    model = nn.Conv2d(3, 4, 1).eval()
    images = torch.randn(1, 3, 30, 45)
    with torch.inference_mode():
        tiled = sliding_window(model, images, window=(16, 20), stride=(7, 9))
        torch.testing.assert_close(tiled, model(images), rtol=0, atol=1e-6)


def test_multi_scale_tta_keeps_the_input_size_and_averages_the_scales():
    model = random_tiny_fcn()
    x = torch.randn(1, 3, 45, 61)
    with torch.inference_mode():
        single, half = infer(model, x), infer(model, x, scales=[0.5])
        both = infer(model, x, scales=[0.5, 1.0], flip=True)
        mirrored = (
            infer(model, x.flip(-1)).flip(-1),
            infer(model, x.flip(-1), scales=[0.5]).flip(-1),
        )
        expected = (single + half + mirrored[0] + mirrored[1]) / 4
        torch.testing.assert_close(single, model(x))
    assert half.shape == (1, 5, 45, 61) and not torch.allclose(half, single)
    torch.testing.assert_close(both, expected, rtol=0, atol=1e-5)


def test_bad_options_are_refused_with_the_key_named():
    model = nn.Conv2d(3, 4, 1)
    with pytest.raises(ValueError, match="inference.scales"):
        infer(model, torch.zeros(1, 3, 8, 8), scales=[])
    with pytest.raises(ValueError, match="inference.window"):
        infer(model, torch.zeros(1, 3, 8, 8), window=0)


def test_read_normalised_normalises_like_the_evaluation_pipeline(tmp_path):
    from PIL import Image

    from seg.data.transforms import eval_transform

    rgb = torch.randint(0, 256, (20, 30, 3), dtype=torch.uint8).numpy()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    expected = eval_transform(mean, std)(image=rgb)["image"]
    torch.testing.assert_close(read_normalised(tmp_path / "a.png", mean, std)[0], expected)
