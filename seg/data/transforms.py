"""Paired image/mask pipelines (albumentations) and the padding collate for evaluation.

Train: random scale (of a base size, or of the native size), pad to the crop with image 0 and
mask ``ignore_index``, random crop, optional horizontal flip and colour jitter, normalise.
Eval: normalise only, at native resolution. Masks are only ever resized with nearest neighbour.
Both return ``image`` float32 ``(C, H, W)`` and ``mask`` uint8 ``(H, W)`` tensors. Images may be
uint8 or float32 on the 0..255 scale (see reading.py) with any number of channels C (one mean
and std each); colour jitter needs 3 channels.
"""

import albumentations as A
import cv2
import torch
from albumentations.pytorch import ToTensorV2

from seg.imagenet import IMAGENET_MEAN, IMAGENET_STD


def random_scale(base_size: int | None, scale_range: tuple[float, float]) -> A.BasicTransform:
    """Resize by a random factor in scale_range, of base_size (shorter side) or of the image."""
    low, high = scale_range
    if base_size is None:
        # albumentations draws the factor from (1 + low, 1 + high)
        return A.RandomScale(
            scale_limit=(low - 1, high - 1),
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
            p=1.0,
        )
    # A list of sizes: the shorter side becomes one of them, drawn uniformly (as torchvision's
    # references/segmentation RandomResize does with min_size..max_size).
    sizes = list(range(round(low * base_size), round(high * base_size) + 1))
    return A.SmallestMaxSize(
        max_size=sizes, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST
    )


def train_transform(
    crop_size: tuple[int, int],
    base_size: int | None = None,
    scale_range: tuple[float, float] = (0.5, 2.0),
    hflip: bool = True,
    color_jitter: float = 0.0,
    photometric: float = 0.0,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    ignore_index: int = 255,
) -> A.Compose:
    """Scale, pad (image 0, mask ignore_index), crop to (h, w), flip, jitter, normalise."""
    height, width = crop_size
    steps = [
        random_scale(base_size, scale_range),
        # albumentations 2.x: fill/fill_mask (value/mask_value are silently ignored)
        A.PadIfNeeded(
            min_height=height,
            min_width=width,
            position="top_left",
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=ignore_index,
        ),
        A.RandomCrop(height=height, width=width),
    ]
    if hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    if color_jitter > 0:
        if len(mean) != 3:
            raise ValueError(
                f"data.color_jitter={color_jitter} works on RGB images, but the data has "
                f"{len(mean)} channels; set data.color_jitter=0"
            )
        j = color_jitter
        steps.append(A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=0.0, p=1.0))
    if photometric > 0:
        steps += light_and_lens(photometric, len(mean))
    steps += [A.Normalize(mean=mean, std=std), ToTensorV2()]
    return A.Compose(steps, mask_interpolation=cv2.INTER_NEAREST)


def light_and_lens(strength: float, channels: int) -> list[A.BasicTransform]:
    """Other light, exposure and optics than the training images had, scaled by ``strength``.

    Brightness and contrast (up to +-strength), gamma (exposure curves of other cameras), hue and
    saturation (other light sources), then a mild blur or sensor noise. For ``strength`` 0.4:
    brightness and contrast +-40 %, gamma 0.6-1.4, hue +-8 and saturation +-12 (OpenCV units).
    Hue and saturation need 3 channels; grey and multi-band images get the rest.
    """
    if not 0 < strength < 1:
        raise ValueError(f"data.photometric={strength} must lie in [0, 1); 0 turns it off")
    s = strength
    steps = [
        A.RandomBrightnessContrast(brightness_limit=s, contrast_limit=s, p=0.8),
        A.RandomGamma(gamma_limit=(round(100 * (1 - s)), round(100 * (1 + s))), p=0.5),
    ]
    if channels == 3:
        hue, sat = round(20 * s), round(30 * s)
        steps.append(A.HueSaturationValue(hue, sat, val_shift_limit=0, p=0.5))
    steps.append(
        A.OneOf(
            [A.GaussianBlur(blur_limit=(3, 5)), A.GaussNoise(std_range=(0.01, 0.01 + 0.1 * s))],
            p=0.5 * s,
        )
    )
    return steps


def eval_transform(
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> A.Compose:
    """Normalise only: evaluation runs at native resolution."""
    return A.Compose([A.Normalize(mean=mean, std=std), ToTensorV2()])


def pad_collate(batch: list[dict], ignore_index: int = 255) -> dict:
    """Stack samples of different sizes: pad images with 0 and masks with ignore_index.

    Padding goes to the bottom and right, to the largest height and width in the batch.
    """
    height = max(s["image"].shape[1] for s in batch)
    width = max(s["image"].shape[2] for s in batch)
    channels = batch[0]["image"].shape[0]
    images = torch.zeros(len(batch), channels, height, width, dtype=batch[0]["image"].dtype)
    masks = torch.full((len(batch), height, width), ignore_index, dtype=batch[0]["mask"].dtype)
    for i, sample in enumerate(batch):
        _, h, w = sample["image"].shape
        images[i, :, :h, :w] = sample["image"]
        masks[i, :h, :w] = sample["mask"]
    return {"image": images, "mask": masks, "id": [s["id"] for s in batch]}
