"""Per-stage summary of a network: stride, feature size, channels, receptive field, params, FLOPs.

    python -m seg.models.summary model=fcn8s model.backbone=vgg16 input=500x500 [num_classes=21]

Rows: each backbone feature level, then each decoder layer in the order it runs, then the total.

The receptive field is the theoretical one (Long et al., CVPR 2015, section 3): the input
pixels one output pixel can depend on, along one axis. It is computed from the modules as the
image goes through: a convolution or pooling of kernel k, dilation d and stride s widens it by
(k - 1) * d * jump and multiplies the jump (the input-pixel distance between neighbouring
outputs) by s; a transposed convolution widens it by (ceil(k / s) - 1) * jump and divides the
jump by s; a bilinear resize adds one jump; where paths merge (a skip's sum, U-Net's
concatenation) the widest field wins; a global pooling or attention sees the whole image. Padding
changes where a field sits, not its width. FLOPs are torch's flop counter's (2 per multiply-add).
"""

import math
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from seg.errors import ConfigError

from . import BACKBONES, DECODERS, MULTIPLE, build_model, count_parameters

USAGE = "python -m seg.models.summary model=fcn8s model.backbone=vgg16 input=500x500"
DEFAULTS = {"model": "fcn8s", "model.backbone": "vgg16", "input": "500x500", "num_classes": "21"}
GLOBAL = (F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.scaled_dot_product_attention)
RESIZE_TAPS = {"nearest": 1, "bilinear": 2, "bicubic": 4}  # input pixels read per output pixel
VGG16_NAMES = {2: "pool1", 4: "pool2", 8: "pool3", 16: "pool4", 32: "fc7"}


@dataclass(frozen=True)
class Field:
    """Receptive field of a feature pixel: `size` input pixels wide, neighbours `jump` apart."""

    size: float = 1
    jump: float = 1

    def grow(self, kernel: int, stride: int, dilation: int = 1) -> "Field":
        return Field(self.size + (kernel - 1) * dilation * self.jump, self.jump * stride)


def first(value) -> int:
    """The height component of a module's int-or-pair argument."""
    return value[0] if isinstance(value, tuple) else value


def module_field(module: nn.Module, field: Field) -> Field | None:
    """The field after `module` for an input of `field`, or None if it does not change it."""
    if isinstance(module, nn.ConvTranspose2d):
        k, s = first(module.kernel_size), first(module.stride)
        return Field(field.size + (math.ceil(k / s) - 1) * field.jump, field.jump / s)
    if isinstance(module, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        dilation = first(getattr(module, "dilation", 1))
        return field.grow(first(module.kernel_size), first(module.stride), dilation)
    return None


def tensors(*values) -> list[Tensor]:
    """The tensors among `values`, looking inside lists, tuples and dicts."""
    found = []
    for value in values:
        if isinstance(value, Tensor):
            found.append(value)
        elif isinstance(value, list | tuple | dict):
            found += tensors(*(value.values() if isinstance(value, dict) else value))
    return found


class FieldTracker(TorchFunctionMode):
    """Carry each tensor's Field through every torch call; layers grow it in their hooks."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        fields = [t._field for t in tensors(args, kwargs) if hasattr(t, "_field")]
        if fields:
            field = max(fields, key=lambda f: f.size)  # merges keep the widest path
            if func in GLOBAL:
                field = Field(math.inf, field.jump)
            elif func is F.interpolate:
                mode = kwargs.get("mode", args[3] if len(args) > 3 else "nearest")
                jump = field.jump * args[0].shape[-2] / out.shape[-2]
                field = Field(field.size + (RESIZE_TAPS.get(mode, 2) - 1) * field.jump, jump)
            for tensor in tensors(out):
                tensor._field = field
        return out


def grow(fields: dict[str, Field], name: str):
    """A forward hook: widen the output's field by the module's own (a layer), record it."""

    def hook(module: nn.Module, inputs: tuple, output) -> None:
        field = getattr(inputs[0], "_field", None) if inputs else None
        if field is not None and (grown := module_field(module, field)) is not None:
            output._field = grown
        if isinstance(output, Tensor) and hasattr(output, "_field"):
            fields[name] = output._field

    return hook


def rows_of(model: nn.Module) -> dict[str, nn.Module]:
    """The modules summarised: backbone stages, then the decoder's layers (ModuleDicts opened)."""
    rows = {}
    if isinstance(getattr(model.backbone, "stages", None), nn.ModuleDict):
        rows |= {f"backbone.stages.{k}": m for k, m in model.backbone.stages.items()}
    for name, child in model.decoder.named_children():
        if isinstance(child, nn.ModuleDict | nn.ModuleList):
            rows |= {f"decoder.{name}.{k}": m for k, m in child.named_children()}
        else:
            rows[f"decoder.{name}"] = child
    return rows


def trace(model: nn.Module, height: int, width: int) -> tuple[list[dict], int, dict[str, Field]]:
    """Run one image through `model`: the rows (name, output shape and field, params, FLOPs),
    the total FLOPs, and the receptive field after every module, by module name."""
    rows, seen, fields = rows_of(model), {}, {}

    def record(name: str):
        def hook(module, inputs, output):
            seen[name] = {"name": name, "shape": tuple(output.shape), "field": output._field}

        return hook

    def levels(module, inputs, output):  # a backbone without stages (timm): its feature maps
        for stride, x in output.items():
            name = f"backbone[{stride}]"
            seen[name] = {"name": name, "shape": tuple(x.shape), "field": x._field}

    handles = [m.register_forward_hook(grow(fields, n)) for n, m in model.named_modules()]
    if not any(name.startswith("backbone.") for name in rows):
        handles.append(model.backbone.register_forward_hook(levels))
    handles += [m.register_forward_hook(record(n)) for n, m in rows.items()]
    image = torch.zeros(1, model_channels(model), height, width)
    image._field = Field()
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter, FieldTracker():
            model(image)
    finally:
        for handle in handles:
            handle.remove()
    flops, prefix = counter.get_flop_counts(), type(model).__name__
    for name, row in seen.items():
        module = rows.get(name)  # None for a timm level: its layers are not one module
        row["params"] = None if module is None else count_parameters(module)
        row["flops"] = None if module is None else sum(flops.get(f"{prefix}.{name}", {}).values())
    return list(seen.values()), counter.get_total_flops(), fields


def model_channels(model: nn.Module) -> int:
    """Image bands the network reads: the in_channels of its first convolution."""
    return next(m.in_channels for m in model.modules() if isinstance(m, nn.Conv2d))


def label(name: str, backbone: str) -> str:
    if backbone == "vgg16" and name.startswith("backbone.stages."):
        return f"{name} ({VGG16_NAMES[int(name.rsplit('.', 1)[1])]})"
    return name


def cells(row: dict, backbone: str) -> tuple[str, ...]:
    """One row's printed values."""
    _, channels, h, w = row["shape"]
    field = row["field"]
    size = "whole image" if math.isinf(field.size) else f"{field.size:g}"
    millions = "" if row["params"] is None else f"{row['params'] / 1e6:.2f}"
    gflops = "" if row["flops"] is None else f"{row['flops'] / 1e9:.2f}"
    return (
        label(row["name"], backbone),
        f"{field.jump:g}",
        f"{h}x{w}",
        str(channels),
        size,
        millions,
        gflops,
    )


def table(rows: list[dict], backbone: str, params: int, flops: int) -> str:
    """The summary as aligned text columns, the total last."""
    head = ("stage", "stride", "size", "channels", "receptive field", "params (M)", "GFLOPs")
    lines = [head, *(cells(row, backbone) for row in rows)]
    lines.append(("total", "", "", "", "", f"{params / 1e6:.2f}", f"{flops / 1e9:.2f}"))
    widths = [max(len(x) for x in column) for column in zip(*lines, strict=True)]
    return "\n".join(
        "  ".join(
            x.ljust(wd) if i == 0 else x.rjust(wd)
            for i, (x, wd) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )


def parse(argv: list[str]) -> dict[str, str]:
    """`key=value` words over DEFAULTS; unknown keys and names are ConfigErrors."""
    options = dict(DEFAULTS)
    for word in argv:
        key, sep, value = word.partition("=")
        if not sep or key not in options:
            raise ConfigError(
                f"unknown argument {word!r}; usage: {USAGE} (keys: {', '.join(options)})"
            )
        options[key] = value
    if options["model"] not in DECODERS:
        raise ConfigError(f"model={options['model']} is not an architecture; choose one of: "
                         f"{', '.join(DECODERS)}")  # fmt: skip
    if options["model.backbone"] not in BACKBONES:
        raise ConfigError(f"model.backbone={options['model.backbone']} is not a backbone; choose "
                         f"one of: {', '.join(BACKBONES)}, or timm:<name>")  # fmt: skip
    size = options["input"].lower().split("x")
    if len(size) != 2 or not all(s.isdigit() and int(s) > 0 for s in size):
        raise ConfigError(f"input={options['input']} is not a size; write HxW, e.g. input=500x500")
    if not options["num_classes"].isdigit() or int(options["num_classes"]) < 1:
        raise ConfigError(f"num_classes={options['num_classes']} must be a positive integer")
    return options


def main(argv: list[str]) -> None:
    """Parse, build (random init), print; a refused command line is one paragraph, status 2."""
    try:
        options = parse(argv)
        arch, backbone, classes = (
            options["model"],
            options["model.backbone"],
            options["num_classes"],
        )
        model = build_model(arch, backbone, int(classes), weights=None)
    except ValueError as error:  # a ConfigError, or a pair build_model refuses (FCN over unet)
        print(f"ConfigError: {error}", file=sys.stderr)
        sys.exit(2)
    height, width = (int(s) for s in options["input"].lower().split("x"))
    padded = "x".join(str(-(-n // MULTIPLE) * MULTIPLE) for n in (height, width))
    image = f"one {height}x{width} image (padded to {padded})"
    print(f"{arch} over {backbone}, {classes} classes, {image}\n")
    rows, flops, _ = trace(model, height, width)
    print(table(rows, backbone, count_parameters(model), flops))


if __name__ == "__main__":
    main(sys.argv[1:])
