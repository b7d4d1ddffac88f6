"""Small building blocks: the bilinear deconvolution, fc → conv conversion, conv blocks."""

import torch
from torch import Tensor, nn


def bilinear_kernel(factor: int) -> Tensor:
    """The (2f, 2f) bilinear interpolation kernel for upsampling by an integer factor f.

    With stride f and padding f/2 it reproduces
    F.interpolate(scale_factor=f, mode="bilinear", align_corners=False) away from the border.
    """
    size = 2 * factor
    center = factor - 0.5  # the kernel is centred between its two middle taps
    taps = 1 - (torch.arange(size, dtype=torch.float64) - center).abs() / factor  # (2f,)
    return torch.outer(taps, taps)  # separable: (2f, 2f)


class UpConv(nn.ConvTranspose2d):
    """ConvTranspose2d that runs in fp32 under CPU autocast; elsewhere it is the plain layer.

    On CPUs, bf16 transposed convolutions with FCN's large kernels (4x4 to 64x64) are many times
    slower than fp32 ones: FCN-8s/ResNet-18 infers about 2x faster with this layer, FCN-32s about
    18x (benchmarks/results/options.md), and the fp32 cost is small next to the backbone. U-Net's
    2x2 up-convolutions are as fast in bf16, so it uses the plain layer. The input is cast up, the
    output stays fp32. Parameters and state-dict keys are those of ConvTranspose2d.
    """

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float(), output_size)
        return super().forward(x, output_size)


def bilinear_upsample(channels: int, factor: int, trainable: bool = True) -> UpConv:
    """ConvTranspose2d that upsamples each channel by factor f, initialised to bilinear.

    Kernel 2f, stride f, padding f/2: an (H, W) map becomes exactly (f*H, f*W). The weight is
    diagonal (channel c reads only channel c) as in the FCN paper; trainable=False freezes it.
    """
    if factor < 2 or factor % 2:
        raise ValueError(f"bilinear_upsample needs an even factor >= 2, got {factor}")
    up = UpConv(channels, channels, 2 * factor, factor, factor // 2, bias=False)
    with torch.no_grad():
        up.weight.zero_()
        kernel = bilinear_kernel(factor).to(up.weight.dtype)
        for c in range(channels):
            up.weight[c, c] = kernel
    up.weight.requires_grad_(trainable)
    return up


def linear_to_conv(
    linear: nn.Linear, in_channels: int, kernel_size: int, padding: int = 0
) -> nn.Conv2d:
    """A convolution equal to `linear` applied to each flattened (C, k, k) window.

    A fully connected layer is a convolution whose kernel covers its whole input: torchvision
    flattens (C, k, k) in C, row, column order, which is exactly a (out, C, k, k) conv weight.
    """
    expected = in_channels * kernel_size * kernel_size
    if linear.in_features != expected:
        raise ValueError(
            f"a Linear with {linear.in_features} inputs cannot become a {kernel_size}x{kernel_size}"
            f" convolution over {in_channels} channels (that needs {expected} inputs)"
        )
    conv = nn.Conv2d(in_channels, linear.out_features, kernel_size, padding=padding)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.view(linear.out_features, in_channels, kernel_size, -1))
        conv.bias.copy_(linear.bias)
    return conv


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (padded), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two padded 3x3 conv + BN + ReLU: one U-Net stage (Ronneberger et al. without the crop)."""
    return nn.Sequential(
        conv_bn_relu(in_channels, out_channels), conv_bn_relu(out_channels, out_channels)
    )
