"""Model folders: a trained network that loads without this program's checkpoints.

A folder holds ``model.safetensors`` (the network's tensors, nothing else), ``config.json``
(arch, backbone, classes, palette, bands, the preprocessing and the evaluation options) and
``README.md``, a model card (card.py): data, the scores of evaluate.py's metrics.json, the
training config, licence. ``save_pretrained`` writes one from a SegmentationModule, a checkpoint
or a folder; ``from_pretrained`` loads a folder or a Hugging Face Hub repo id (downloaded with
huggingface_hub); ``push_to_hub`` uploads a folder. evaluate.py, predict.py, export.py and
``init_from`` read folders through seg.checkpoint.read, which checks the format.
"""

import json
import re
from pathlib import Path

import huggingface_hub
from safetensors.torch import save_file
from torch import nn

from seg import __version__
from seg.card import model_card
from seg.checkpoint.read import (
    CARD_FILE,
    CONFIG_FILE,
    FOLDER_FORMAT,
    FOLDER_VERSION,
    WEIGHTS_FILE,
    first_line,
    load_network,
)
from seg.errors import CheckpointError, HubError

REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")  # user/name
PREPROCESSING = ("mean", "std")
EVALUATION = ("eval_scale", "eval_flip")
FACTS = ("arch", "backbone", "num_classes", "in_channels", "class_names", "palette",
         "ignore_index", "weights", "epoch", "step")  # fmt: skip
# what a checkpoint without the key means
DEFAULTS = {"in_channels": 3, "ignore_index": 255, "eval_scale": 1.0, "eval_flip": False}


def network_and_facts(source) -> tuple[nn.Module, dict]:
    """The network and its facts from a SegmentationModule, a checkpoint or a model folder."""
    if hasattr(source, "hparams") and isinstance(getattr(source, "model", None), nn.Module):
        steps = {"epoch": source.current_epoch, "step": source.global_step}
        return source.model, {**dict(source.hparams), **steps}
    return load_network(source)


def folder_config(facts: dict) -> dict:
    """config.json: what rebuilds the network and what its inputs must look like."""
    config = {"format": FOLDER_FORMAT, "format_version": FOLDER_VERSION, "seg": __version__}
    config |= {key: facts.get(key, DEFAULTS.get(key)) for key in FACTS}
    config["preprocessing"] = {
        "channels": "RGB" if config["in_channels"] == 3 else f"{config['in_channels']} bands",
        "max_pixel_value": 255.0,  # pixels / 255, then (x - mean) / std per channel
        **{key: list(facts[key]) for key in PREPROCESSING},
        "size": "any: the network pads to a multiple of 32 and crops its logits back",
    }
    config["evaluation"] = {key: facts.get(key, DEFAULTS[key]) for key in EVALUATION}
    return config


def training_config(checkpoint: Path | None) -> Path | None:
    """The run's Hydra config (<run>/.hydra/config.yaml) above a checkpoint, if there is one."""
    for folder in (checkpoint.parents if checkpoint else [])[:3]:
        if (folder / ".hydra" / "config.yaml").is_file():
            return folder / ".hydra" / "config.yaml"
    return None


def metrics_result(metrics: str | Path, checkpoint: Path | None) -> tuple[dict, str]:
    """The result row of evaluate.py's metrics.json for this model, and its split."""
    try:
        payload = json.loads(Path(metrics).read_text())
        results, split = payload["results"], payload["split"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"metrics={metrics} is not a metrics.json written by evaluate.py ({first_line(error)});"
            f" pass <evaluate output dir>/metrics.json, or leave metrics out"
        ) from error
    own = [r for r in results if checkpoint and Path(r["path"]) == checkpoint.resolve()]
    if len(own) == 1 or len(results) == 1:
        return (own or results)[0], split
    raise CheckpointError(
        f"metrics={metrics} holds {len(results)} results and none (or several) for {checkpoint};"
        f" evaluate this model alone (evaluate.py ckpt_path=<checkpoint>) and pass its metrics.json"
    )


def save_pretrained(
    source, folder: str | Path, metrics: str | Path | None = None, license: str | None = None
) -> Path:
    """Write the model folder of ``source`` (a SegmentationModule, a checkpoint or a folder).

    ``metrics``: evaluate.py's metrics.json for this model, whose scores the card quotes.
    ``license``: an SPDX id or a Hub licence name for the card (``other`` when not given).
    """
    checkpoint = None if hasattr(source, "hparams") else Path(source)
    model, facts = network_and_facts(source)
    result = metrics_result(metrics, checkpoint) if metrics else None
    config = folder_config(facts)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, folder / WEIGHTS_FILE, metadata={"format": "pt", "seg": FOLDER_FORMAT})
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    hparams = {k: v for k, v in facts.items() if k not in ("epoch", "step")}
    card = model_card(config, hparams, result, training_config(checkpoint), license)
    (folder / CARD_FILE).write_text(card)
    return folder


def from_pretrained(source: str | Path, revision: str | None = None) -> tuple[nn.Module, dict]:
    """The network (eval mode) and facts of a model folder, or of a Hub repo id ``user/name``.

    A repo id is downloaded with huggingface_hub.snapshot_download into its cache; offline
    that is one HubError saying how to bring the folder over by hand.
    """
    path = Path(source).expanduser()
    if not path.exists() and REPO_ID.fullmatch(str(source)):
        path = download(str(source), revision)
    return load_network(path)


def download(repo_id: str, revision: str | None = None) -> Path:
    """The folder of Hub repo ``repo_id`` in huggingface_hub's cache, downloaded if needed."""
    try:
        files = [CONFIG_FILE, WEIGHTS_FILE, CARD_FILE]
        return Path(
            huggingface_hub.snapshot_download(repo_id, revision=revision, allow_patterns=files)
        )
    except (OSError, ValueError) as error:  # no network, no such repo, a private one
        raise HubError(
            f"{repo_id} is no folder here and could not be downloaded from the Hugging Face Hub"
            f" ({' '.join(str(error).split())[:300]}). Without internet, download it elsewhere"
            f" (`hf download {repo_id} --local-dir <folder>`), copy the folder here and pass its"
            f" path"
        ) from error


def push_to_hub(folder: str | Path, repo_id: str, private: bool = False) -> str:
    """Upload a model folder to Hub repo ``repo_id`` (created if needed); return the commit URL.

    Needs a token (``hf auth login`` or HF_TOKEN) with write access.
    """
    load_network(folder)  # refuse a folder that would not load
    api = huggingface_hub.HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, CARD_FILE],
            commit_message=f"seg {__version__} model folder",
        )
    except (OSError, ValueError) as error:  # no network, no token, no write access
        raise HubError(
            f"uploading {folder} to the Hugging Face Hub repo {repo_id} failed"
            f" ({' '.join(str(error).split())[:300]}); check the network and the token"
            f" (`hf auth login` or HF_TOKEN, with write access to {repo_id})"
        ) from error
    return str(getattr(commit, "commit_url", commit))
