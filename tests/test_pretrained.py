"""Model folders: save -> load, the card against metrics.json, every entry point, bad folders.

The Hub is not reachable from the tests: ``from_pretrained("user/name")`` and ``push_to_hub``
are tested up to huggingface_hub's calls, which are replaced by stand-ins.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST_TRAIN, compose, write_voc_tree
from huggingface_hub import ModelCard
from huggingface_hub.errors import LocalEntryNotFoundError
from PIL import Image
from safetensors.torch import save_file

import evaluate
import seg
from export import export
from predict import predict
from seg.checkpoint import init_from_checkpoint, load_network
from seg.errors import CheckpointError, HubError
from seg.module import SegmentationModule
from seg.report.tables import SCORES, percent
from train import train

BACKBONE = "timm:mobilenetv4_conv_small"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two epochs of FCN-8s over a timm backbone, its evaluation and its model folder."""
    tmp = tmp_path_factory.mktemp("pretrained")
    root = write_voc_tree(tmp / "VOC2012", {"train": 4, "val": 2})
    data = [f"data.root={root}", "data.num_workers=0", "data.persistent_workers=false"]
    train_only = [*FAST_TRAIN, f"model.backbone={BACKBONE}", "data.crop_size=32"]
    cfg = compose("train", [*train_only, *data, "data.batch_size=2"], tmp / "run")
    train(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    evaluated = evaluate.evaluate(compose("eval", [f"ckpt_path={ckpt}", *data], tmp / "eval"))
    overrides = ["format=pretrained", f"metrics={tmp / 'eval' / 'metrics.json'}", "license=mit"]
    folders = export(compose("export", [f"ckpt_path={ckpt}", *overrides], tmp / "folder"))
    (folder,) = folders["folders"]
    row = evaluated["results"][0]
    return {"ckpt": ckpt, "folder": Path(folder), "root": root, "data": data, "row": row}


def test_save_then_load_gives_identical_logits_and_options(tmp_path):
    torch.manual_seed(0)
    options = dict(class_names=["a", "b", "c"], palette=[[1, 2, 3], [4, 5, 6], [7, 8, 9]],
                   mean=[0.1, 0.2, 0.3, 0.4], std=[0.5, 0.6, 0.7, 0.8], in_channels=4,
                   eval_scale=0.5, eval_flip=True)  # fmt: skip
    module = SegmentationModule("unet", BACKBONE, 3, weights=None, **options).eval()
    folder = seg.save_pretrained(module, tmp_path / "folder")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    model, info = seg.from_pretrained(folder)
    images = torch.randn(2, 4, 65, 97)
    with torch.no_grad():
        assert torch.equal(model(images), module.model(images))
    assert {k: info[k] for k in options} == options


def table_rows(markdown: str) -> list[list[str]]:
    """Every Markdown table row of the card as stripped cells (separator lines left out)."""
    lines = [line.strip().strip("|") for line in markdown.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.split("|")] for line in lines]


def test_the_cards_numbers_equal_metrics_json(run):
    card = ModelCard.load(run["folder"] / "README.md")
    row = run["row"]
    values = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert values == {title: row[key] for key, title in SCORES.items()}
    assert {r.dataset_split for r in card.data.eval_results} == {"val"}
    assert card.data.license == "mit" and card.data.library_name == "seg"
    rows = table_rows(card.text)
    header = rows.index(list(SCORES.values()))
    assert rows[header + 1] == [percent(row[key]) for key in SCORES]
    per_class = {r[0]: r[1] for r in rows if r[0] in row["iou"]}
    assert per_class == {name: percent(iou) for name, iou in row["iou"].items()}
    assert f"backbone: {BACKBONE}" in card.text  # the training hyperparameters


def test_evaluate_and_predict_on_a_folder_equal_the_checkpoint(run, tmp_path):
    cfg = compose("eval", [f"ckpt_path={run['folder']}", *run["data"]], tmp_path / "eval")
    (row,) = evaluate.evaluate(cfg)["results"]
    assert row["mIoU"] == run["row"]["mIoU"] and row["confusion"] == run["row"]["confusion"]
    images = run["root"] / "JPEGImages"
    masks = {}
    for source in ("ckpt", "folder"):
        cfg = compose("predict", [f"ckpt_path={run[source]}", f"input={images}"], tmp_path / source)
        masks[source] = [np.array(Image.open(p)) for p in predict(cfg)["predictions"]]
    assert all(map(np.array_equal, masks["ckpt"], masks["folder"])) and len(masks["ckpt"]) == 6


def test_init_from_a_folder_copies_every_tensor(run):
    model, _ = load_network(run["ckpt"])
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    loaded, skipped = init_from_checkpoint(model, run["folder"])
    assert not skipped and len(loaded) == len(model.state_dict())
    trained, _ = load_network(run["ckpt"])
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in model.state_dict().items())


def damage(folder: Path, how: str) -> str:
    """Break a copy of a model folder; return the file the error must name."""
    config, weights = folder / "config.json", folder / "model.safetensors"
    if how == "no config":
        config.unlink()
    elif how == "no weights":
        weights.unlink()
    elif how == "config of another program":
        config.write_text(json.dumps({"model_type": "segformer", "num_labels": 21}))
    elif how == "config not JSON":
        config.write_text("arch: fcn8s\n")
    elif how == "weights not safetensors":
        weights.write_bytes(b"\x80\x04not safetensors")
    elif how == "weights of another network":
        save_file({"conv.weight": torch.zeros(3, 3, 1, 1)}, weights)
    return str(config if "config" in how else weights)


@pytest.mark.parametrize(
    "how", ["no config", "no weights", "config of another program", "config not JSON",
            "weights not safetensors", "weights of another network"],
)  # fmt: skip
def test_a_folder_with_a_missing_or_foreign_file_is_one_paragraph_naming_it(
    run, tmp_path, how, capsys
):
    folder = tmp_path / "model"
    folder.mkdir()
    for file in run["folder"].iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    named = damage(folder, how)
    with pytest.raises(CheckpointError) as error:
        seg.from_pretrained(folder)
    assert named in str(error.value) and "\n" not in str(error.value)
    cfg = compose("eval", [f"ckpt_path={folder}", *run["data"]], tmp_path / "eval")
    with pytest.raises(SystemExit) as stop:
        evaluate.main(cfg)  # the program: exit status 2, one paragraph, no traceback
    err = capsys.readouterr().err
    assert stop.value.code == 2 and named in err and "Traceback" not in err


def test_a_hub_repo_id_downloads_through_huggingface_hub_or_is_one_clear_error(run, monkeypatch):
    def offline(repo_id, **kwargs):
        raise LocalEntryNotFoundError("Got: ConnectError: [Errno -2] Name or service not known")

    monkeypatch.setattr("huggingface_hub.snapshot_download", offline)
    with pytest.raises(HubError, match="hf download someone/seg-model --local-dir"):
        seg.from_pretrained("someone/seg-model")
    asked = {}
    monkeypatch.setattr(
        "huggingface_hub.snapshot_download",
        lambda repo_id, **kwargs: asked.update(repo_id=repo_id, **kwargs) or str(run["folder"]),
    )
    model, info = seg.from_pretrained("someone/seg-model")
    assert asked["repo_id"] == "someone/seg-model" and info["backbone"] == BACKBONE
    assert set(asked["allow_patterns"]) == {"config.json", "model.safetensors", "README.md"}


def test_push_to_hub_uploads_the_folder_export_wrote(run, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("huggingface_hub.HfApi.create_repo", lambda self, *a, **k: calls.append(k))
    monkeypatch.setattr(
        "huggingface_hub.HfApi.upload_folder",
        lambda self, **k: calls.append(k) or "https://huggingface.co/me/seg-model/commit/1",
    )
    overrides = [f"ckpt_path={run['ckpt']}", "format=pretrained", "push_to_hub=me/seg-model"]
    out = export(compose("export", overrides, tmp_path / "out"))
    ((folder, url),) = out["folders"].items()
    assert url.endswith("/commit/1") and calls[1]["repo_id"] == "me/seg-model"
    assert calls[1]["folder_path"] == folder and calls[0] == {"private": False, "exist_ok": True}

    def refused(self, **kwargs):
        raise OSError("401 Unauthorized")

    monkeypatch.setattr("huggingface_hub.HfApi.upload_folder", refused)
    with pytest.raises(HubError, match="hf auth login"):
        seg.push_to_hub(folder, "me/seg-model")
