"""Reading checkpoints safely and initialising a network from one (staged training, fine-tuning)."""

import logging
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from seg.models import load_matching_state

log = logging.getLogger("seg")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason and what to do."""


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint of this program with ``weights_only=True``; refuse anything else.

    ``weights_only`` loading never runs code from the file: a pickle that would is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; pass the path of a .ckpt file written by "
            f"train.py (they are under <run dir>/checkpoints/)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"checkpoint {path} was refused: it holds objects that plain weights loading will not "
            f"unpickle (loading it could run code from the file). Only use checkpoints written "
            f"by train.py. Detail: {str(error).splitlines()[0]}"
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(
            f"checkpoint {path} could not be read; it is truncated or corrupt (was it copied "
            f"while being written?). Use another checkpoint of the run, e.g. last.ckpt. "
            f"Detail: {str(error).splitlines()[0]}"
        ) from error
    hparams = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
    if "state_dict" not in checkpoint or "arch" not in hparams:
        raise CheckpointError(
            f"{path} is not a seg checkpoint (it has no state_dict and model hyperparameters); "
            f"pass a .ckpt written by train.py"
        )
    return checkpoint


def model_state(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The network's tensors (``model.`` prefix removed) from a SegmentationModule checkpoint."""
    prefix = "model."
    state = checkpoint["state_dict"]
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def init_from_checkpoint(model: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """Copy every tensor of ``path`` whose name and shape match; print what was and was not."""
    loaded, skipped = load_matching_state(model, model_state(read_checkpoint(path)))
    log.info("init_from %s: %d tensors copied: %s", path, len(loaded), ", ".join(loaded))
    log.info(
        "init_from %s: %d tensors left as initialised (new or other shape): %s",
        path,
        len(skipped),
        ", ".join(skipped) or "none",
    )
    return loaded, skipped
