"""seg: FCN-32s/16s/8s and U-Net semantic segmentation with Lightning and Hydra.

Contracts shared by every part:
- Sample: ``image`` float32 ``(3, H, W)``, normalised; ``mask`` int64 ``(H, W)`` with values
  ``0..num_classes-1`` and ``ignore_index`` (255). Batches are ``(N, 3, H, W)`` and ``(N, H, W)``.
- Model: ``images (N, 3, H, W) -> logits (N, num_classes, H, W)`` for any ``H, W >= 32``.
"""

__version__ = "0.1.0"

# Model folders (seg/pretrained.py), imported on first use: `import seg` stays free of torch.
PRETRAINED = ("save_pretrained", "from_pretrained", "push_to_hub")


def __getattr__(name: str):
    if name in PRETRAINED:
        from seg import pretrained

        return getattr(pretrained, name)
    raise AttributeError(f"module 'seg' has no attribute {name!r}")


__all__ = ["__version__", *PRETRAINED]
