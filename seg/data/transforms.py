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

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    steps += [A.Normalize(mean=mean, std=std), ToTensorV2()]
    return A.Compose(steps, mask_interpolation=cv2.INTER_NEAREST)


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
