"""Reading checkpoints: refuse every file that is not a train.py checkpoint, in one paragraph.

Every reader (``ckpt_path``, ``init_from``, evaluation) goes through ``read_checkpoint``, which
loads with ``weights_only=True`` (nothing in the file runs) and says what a refused file is.
``load_network`` and ``init_from_checkpoint`` also take a model folder (seg.save_pretrained:
config.json + model.safetensors), read by ``read_folder`` with the same one-paragraph errors.
"""

import json
import logging
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors
from torch import Tensor, nn

from seg.errors import CheckpointError
from seg.models import build_model, load_matching_state

log = logging.getLogger("seg")
NETWORK_KEYS = ("arch", "backbone", "num_classes")
ADVICE = "pass a .ckpt file written by train.py (they are under <run dir>/checkpoints/)"


def first_line(error: BaseException, limit: int = 200) -> str:
    """An exception's first sentence, at most ``limit`` characters cut at a word, or its type
    when it has no message (a bare EOFError)."""
    lines = str(error).strip().splitlines()
    return clip(lines[0], limit) if lines else type(error).__name__


def clip(text: str, limit: int = 200) -> str:
    """``text`` up to its first full stop, shortened at a word boundary to ``limit``."""
    text = text.strip()
    end = text.find(". ")
    text = text[: end + 1] if end > 0 else text
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " ..."


def load_file(path: Path, mmap: bool = False) -> object:
    """``torch.load(path, weights_only=True)``, every failure as a ``CheckpointError``."""
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; {ADVICE}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; {ADVICE}")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"checkpoint {path} is empty (0 bytes): its write was interrupted or it was never "
            f"written. Use another checkpoint of the run, e.g. last.ckpt"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        if "global" not in str(error).lower():  # not a refused class: a plain pickle, damage
            raise CheckpointError(
                f"checkpoint {path} could not be read: it is not a PyTorch checkpoint (a plain "
                f"pickle or a damaged file; detail: {first_line(error)}); {ADVICE}"
            ) from error
        culprit = next((s for s in str(error).split("\n") if "global" in s.lower()), "")
        raise CheckpointError(
            f"checkpoint {path} was refused: it holds objects that plain weights loading will not "
            f"unpickle (loading it could run code from the file). Only use checkpoints written "
            f"by train.py. Detail: {clip(culprit)}"
        ) from error
    except Exception as error:  # noqa: BLE001 - any loader failure means an unreadable file
        raise CheckpointError(
            f"checkpoint {path} could not be read; it is truncated or corrupt, or not a checkpoint "
            f"(was it copied while being written?). Use another checkpoint of the run, e.g. "
            f"last.ckpt. Detail: {type(error).__name__}: {first_line(error)}"
        ) from error


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """Load a checkpoint of this program with ``weights_only=True``; refuse anything else.

    ``mmap=True`` maps the tensors instead of reading them (a cheap look at the keys).
    """
    path = Path(path)
    checkpoint = load_file(path, mmap)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(checkpoint).__name__}, not a checkpoint (a dict "
            f"with state_dict and hyper_parameters); {ADVICE}"
        )
    state = checkpoint.get("state_dict")
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path} is not a seg checkpoint: its state_dict is missing or is not a dict of "
            f"tensors (found {type(state).__name__}); {ADVICE}"
        )
    missing = [k for k in NETWORK_KEYS if not isinstance(hparams, dict) or k not in hparams]
    if missing:
        kind = "a Lightning checkpoint of another program" if hparams else "not a seg checkpoint"
        raise CheckpointError(
            f"{path} is {kind}: its hyper_parameters lack {', '.join(missing)}, so the network "
            f"cannot be rebuilt; {ADVICE}"
        )
    return checkpoint


def model_state(checkpoint: dict) -> dict[str, Tensor]:
    """The network's tensors (``model.`` prefix removed) from a SegmentationModule checkpoint."""
    prefix = "model."
    state = checkpoint["state_dict"]
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def load_network(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild the network of a train.py checkpoint or a model folder from it alone, in eval mode.

    Returns the network and the checkpoint's facts: its hyperparameters plus epoch and step.
    """
    source = Path(path)
    if is_model_folder(path):
        info, state = read_folder(path)
        source = source / WEIGHTS_FILE
    else:
        checkpoint = read_checkpoint(path)
        hparams = dict(checkpoint["hyper_parameters"])
        info = {**hparams, "epoch": checkpoint.get("epoch"), "step": checkpoint.get("global_step")}
        state = model_state(checkpoint)
    try:
        model = build_model(
            info["arch"],
            info["backbone"],
            info["num_classes"],
            weights=None,
            in_channels=info.get("in_channels", 3),
        )
        model.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError, TypeError) as error:
        raise CheckpointError(
            f"checkpoint {source} does not fit the network it names ({info.get('arch')}/"
            f"{info.get('backbone')}, {info.get('num_classes')} classes): was it written by "
            f"another version of this program? Detail: {' '.join(str(error).split())[:300]}"
        ) from error
    return model.eval(), info


def init_from_checkpoint(model: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """Copy every tensor of ``path`` whose name and shape match; print what was and was not.

    Copying nothing, or only all-zero tensors, is refused: the run would silently start fresh.
    """
    state = read_folder(path)[1] if is_model_folder(path) else model_state(read_checkpoint(path))
    loaded, skipped = load_matching_state(model, state)
    if not any(state[k].count_nonzero() for k in loaded):
        raise CheckpointError(
            f"init_from={path} gave the network nothing: {len(loaded)} tensors matched by name "
            f"and shape and all of them are zero. Use a checkpoint of a trained network with "
            f"the same backbone (model.backbone), or drop init_from to start from scratch"
        )
    log.info("init_from %s: %d tensors copied: %s", path, len(loaded), ", ".join(loaded))
    log.info(
        "init_from %s: %d tensors left as initialised (new or other shape): %s",
        path,
        len(skipped),
        ", ".join(skipped) or "none",
    )
    return loaded, skipped


# Model folders (seg.save_pretrained): the network's facts in config.json, its tensors in
# model.safetensors, a model card in README.md (not needed to load).
FOLDER_FORMAT, FOLDER_VERSION = "seg-model-folder", 1
CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "README.md"
FOLDER_ADVICE = (
    "write one with `python export.py format=pretrained ckpt_path=<checkpoint>` or "
    "seg.save_pretrained(checkpoint, folder)"
)


def is_model_folder(path: str | Path) -> bool:
    """A directory holding config.json or model.safetensors (a run directory holds neither)."""
    path = Path(path)
    return path.is_dir() and any((path / f).is_file() for f in (CONFIG_FILE, WEIGHTS_FILE))


def read_folder(path: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """A model folder's facts (load_network's info) and tensors; refuse missing or foreign files."""
    path = Path(path)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise CheckpointError(
                f"{path / name} does not exist: a model folder holds {CONFIG_FILE} and "
                f"{WEIGHTS_FILE}; {FOLDER_ADVICE}"
            )
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"{path / CONFIG_FILE} is not JSON ({first_line(error)}); {FOLDER_ADVICE}"
        ) from error
    kind = config.get("format") if isinstance(config, dict) else None
    lacking = [k for k in NETWORK_KEYS if kind and k not in config]
    if kind != FOLDER_FORMAT or config.get("format_version", 0) > FOLDER_VERSION or lacking:
        raise CheckpointError(
            f"{path / CONFIG_FILE} is not a seg model config (format {kind!r}, version "
            f"{config.get('format_version') if kind else None}; expected {FOLDER_FORMAT!r} "
            f"up to version {FOLDER_VERSION}, with {', '.join(NETWORK_KEYS)}): a folder of "
            f"another program or of a newer seg; {FOLDER_ADVICE}"
        )
    try:
        state = load_safetensors(path / WEIGHTS_FILE, device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path / WEIGHTS_FILE} could not be read as safetensors ({first_line(error)});"
            f" it is damaged or not a weights file: {FOLDER_ADVICE}"
        ) from error
    info = {k: v for k, v in config.items() if k not in ("preprocessing", "evaluation")}
    return info | config.get("preprocessing", {}) | config.get("evaluation", {}), state
