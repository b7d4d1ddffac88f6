"""The model card (README.md) of a model folder: Hub metadata, then classes, data, scores, use.

The metadata is huggingface_hub's ModelCardData: licence, tags and a model-index whose values
are the fractions of evaluate.py's metrics.json, so that the Hub shows them and a program reads
them back with ``huggingface_hub.ModelCard.load``. The body quotes the same numbers as
percentages with one decimal, as evaluate.py's tables do.
"""

import json
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from seg.report.tables import SCORES, markdown_table, percent

METRIC_TYPES = {"pixel_acc": "accuracy", "mean_acc": "mean_accuracy", "mIoU": "mean_iou",
                "fwIoU": "frequency_weighted_iou"}  # fmt: skip
NOT_EVALUATED = (
    "Not evaluated yet: run `python evaluate.py ckpt_path=<this folder> data=...` and write the"
    " folder again with `metrics=<its output dir>/metrics.json`."
)


def dataset_name(data: dict) -> str:
    """The training data's folder name (VOC2012, camvid, ...), or 'unknown'."""
    root = str(data.get("root") or "").rstrip("/")
    return Path(root).name if root else "unknown"


def card_data(name: str, tags: list[str], result: tuple | None, dataset: str, license):
    """Hub metadata; the model-index holds the four scores of ``result`` (row, split)."""
    evals = None
    if result:
        row, split = result
        evals = [
            EvalResult(task_type="image-segmentation", dataset_type=dataset, dataset_name=dataset,
                       dataset_split=split, metric_type=METRIC_TYPES[key], metric_name=title,
                       metric_value=row[key])
            for key, title in SCORES.items()
        ]  # fmt: skip
    return ModelCardData(
        model_name=name,
        library_name="seg",
        license=license or "unknown",
        pipeline_tag="image-segmentation",
        tags=tags,
        eval_results=evals,
    )


def scores_section(result: tuple | None) -> str:
    if not result:
        return NOT_EVALUATED
    row, split = result
    overall = markdown_table(list(SCORES.values()), [[percent(row[k]) for k in SCORES]])
    per_class = markdown_table(
        ["class", "IU (%)"], [[c, percent(v)] for c, v in row["iou"].items()]
    )
    return f"evaluate.py on split `{split}` (metrics.json), in %:\n\n{overall}\n\n{per_class}"


def data_section(data: dict, config: dict) -> str:
    names, palette = config["class_names"] or [], config["palette"] or []
    classes = markdown_table(
        ["index", "class", "colour (RGB)"],
        [[i, n, tuple(palette[i]) if i < len(palette) else "-"] for i, n in enumerate(names)],
    )
    keys = [f"- `data.{k}`: `{v}`" for k, v in data.items() if not isinstance(v, dict | list)]
    source = "\n".join(keys) or "The run's config was not found beside the checkpoint."
    return f"{source}\n\nClasses:\n\n{classes}"


def use_section(config: dict) -> str:
    """The commands and the Python call that use the folder, and its preprocessing."""
    preprocessing = "\n".join(f"- {k}: `{v}`" for k, v in config["preprocessing"].items())
    return f"""```bash
python predict.py ckpt_path=<this folder> input=<image or folder>
python evaluate.py ckpt_path=<this folder> data=<its dataset>
```

```python
import seg
model, info = seg.from_pretrained("<this folder or user/name on the Hub>")
```

Preprocessing (config.json), evaluation options {json.dumps(config["evaluation"])}:

{preprocessing}"""


def model_card(
    config: dict, hparams: dict, result: tuple | None, run_config: Path | None, license
) -> str:
    """README.md of a model folder; ``result`` is (metrics.json row, split) or None."""
    text = run_config.read_text() if run_config else ""
    data = (yaml.safe_load(text) or {}).get("data", {}) if text else {}
    arch, backbone = config["arch"], config["backbone"]
    name = f"{arch}-{backbone.removeprefix('timm:')}"
    tags = ["semantic-segmentation", "seg", arch, backbone.removeprefix("timm:")]
    metadata = card_data(name, tags, result, dataset_name(data), license)
    run = text or yaml.safe_dump(hparams, default_flow_style=None, sort_keys=False)
    body = f"""
# {name}

{arch} over the {backbone} backbone: {config["num_classes"]} classes, {config["in_channels"]}
input bands, trained with seg {config["seg"]} (epoch {config["epoch"]},
step {config["step"]}); backbone initialised from `{config["weights"]}`.

## Data

{data_section(data, config)}

## Scores

{scores_section(result)}

## Use

{use_section(config)}

## Training config

{"The run's Hydra config:" if text else "The checkpoint's hyperparameters:"}

```yaml
{run.strip()}
```

## Licence

{f"`{license}`." if license else "Not stated."} The weights also carry the terms of the
training data and of the backbone's pretrained weights, if any.
"""
    return str(ModelCard(f"---\n{metadata.to_yaml()}\n---\n{body}"))
