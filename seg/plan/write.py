"""The plan as files: ``configs/data/NAME.yaml`` (the doctor's writer) and
``configs/experiment/NAME.yaml``, every choice with its reason as a comment, plus split lists.

Values are JSON, which is YAML. The experiment composes ``data=NAME``, ``model=fcn8s`` and the
trainer of the device; assumptions head the file, each with its override.
"""

import json
import textwrap
from argparse import Namespace
from pathlib import Path

from seg.doctor.data_config import config_text
from seg.doctor.diagnosis import Report
from seg.plan.fingerprint import Fingerprint
from seg.plan.rules import Plan

SECTIONS = ("model", "data", "trainer")


def comment(text: str, indent: str = "# ") -> list[str]:
    return textwrap.wrap(text, 98, initial_indent=indent, subsequent_indent="#   ")


def summary(fp: Fingerprint, plan: Plan) -> list[str]:
    """The fingerprint and the estimate in a few comment lines."""
    e = plan.estimate
    thin = [
        f"{n} {t:g}"
        for n, t in zip(fp.class_names, fp.thickness, strict=True)
        if t is not None and t < 32
    ]
    return comment(
        f"Fingerprint: {e['train_images']} train / {e['val_images']} val images, median "
        f"{fp.size[0]}x{fp.size[1]}, {fp.bands} bands, {fp.bit_depth}-bit, {len(fp.class_names)} "
        f"classes ({fp.encoding} masks), {len(fp.groups)} file-name groups; classes thinner "
        f"than 32 px (median thickness): {', '.join(thin) or 'none'}. Estimate: "
        f"{e['seconds_per_step']} s/step, {e['steps']} steps, {e['epochs']} epochs, "
        f"{e['validation_seconds']} s per validation."
    )


def experiment_text(name: str, fp: Fingerprint, plan: Plan, argv: list[str], trainer: str):
    rows = ["# @package _global_", f"# Written by: python -m seg.plan {' '.join(argv)}"]
    rows += summary(fp, plan)
    for what, override in plan.assumed:
        rows += comment(f"Assumed: {what}. To change: {override}.")
    rows += [
        "defaults:",
        f"  - override /data: {name}",
        "  - override /model: fcn8s",
        f"  - override /trainer: {trainer}",
        "",
        f"task_name: {name}",
    ]
    for section in SECTIONS:
        rows.append(f"{section}:")
        for choice in plan.choices:
            head, _, key = choice.key.partition(".")
            if head == section:
                rows.append(f"  {key}: {json.dumps(choice.value)}  # {choice.why}")
    return "\n".join(rows) + "\n"


def data_text(report: Report, args: Namespace, argv: list[str], void_colours) -> str:
    """The doctor's data config, headed by the planner's command."""
    text = config_text(report, args, void_colours, argv)
    body = text.split("\n", 1)[1]
    return f"# Written by: python -m seg.plan {' '.join(argv)}\n{body}"


def write_splits(folder: Path, train: list[str], val: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (folder / "val.txt").write_text("".join(f"{i}\n" for i in val))


def write_all(configs: Path, name: str, data: str, experiment: str) -> list[Path]:
    paths = [configs / "data" / f"{name}.yaml", configs / "experiment" / f"{name}.yaml"]
    for path, text in zip(paths, (data, experiment), strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return paths
