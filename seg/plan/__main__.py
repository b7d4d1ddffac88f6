"""Plan an experiment from a raw folder, this device and a time budget.

    python -m seg.plan ROOT --budget 20m --name NAME [doctor options] [--configs DIR]

The doctor scans and checks the tree (seg/doctor/cli.py; its options apply); the fingerprint
adds object sizes, bit depth and file-name groups; the probe times candidate setups on this
device; the rules (docs/plan.md) choose. Writes ``DIR/data/NAME.yaml`` and
``DIR/experiment/NAME.yaml`` (and split lists when the tree has no val split) and prints the
training command. Exit status 1 when the doctor finds problems, 2 on bad input (a budget too
small for one epoch).
"""

import sys
from pathlib import Path

import torch

from seg.cli import expected_errors
from seg.data.encodings import MaskDecoder
from seg.doctor import cli as doctor
from seg.errors import DatasetError
from seg.plan.choices import make_plan
from seg.plan.fingerprint import fingerprint
from seg.plan.probe import probe
from seg.plan.rules import candidates, resolution
from seg.plan.write import data_text, experiment_text, write_all, write_splits
from seg.training import parse_duration

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
AMBIGUOUS = "every mask holds only 0 and 255"


def arguments(argv: list[str] | None):
    parser = doctor.parser(__doc__.splitlines()[0])
    parser.add_argument("--budget", required=True, help="training time, e.g. 20m, 90s, 1.5h")
    parser.add_argument("--name", required=True, help="config name: data=NAME, experiment=NAME")
    parser.add_argument("--configs", default=str(REPO_CONFIGS), help="where data/ experiment/ go")
    parser.add_argument("--splits-dir", help="for made split lists (default: data/splits/NAME)")
    parser.add_argument("--probe-seconds", type=float, default=120.0, help="probe time bound")
    return parser.parse_args(argv)


def diagnose(args) -> tuple:
    """The doctor's report; 0/255 masks without --mask-encoding are read as binary, said so."""
    report = doctor.report_of(args)
    if args.mask_encoding is None and any(p.startswith(AMBIGUOUS) for p in report.problems):
        args.mask_encoding = "binary"
        report = doctor.report_of(args)
    if report.problems:
        print(doctor.format_report(report, args.ignore_index))
        raise DatasetError(
            f"{len(report.problems)} problems in {args.root} (listed above); fix them, then plan"
        )
    decoder = MaskDecoder(
        len(report.class_names), args.ignore_index,
        "index" if report.encoding == "cityscapes" else report.encoding,
        doctor.parse_label_map(args.label_map), palette=report.palette,
        void_colours=doctor.parse_colours(args.void_colours),
    )  # fmt: skip
    return report, decoder


def memory_mb() -> float:
    """Memory the probe's candidates may use: the GPU's, or the machine's available RAM."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory / 2**20
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def command(name: str, configs: Path) -> str:
    extra = "" if configs.resolve() == REPO_CONFIGS else f" 'hydra.searchpath=[file://{configs}]'"
    return f"python train.py experiment={name}{extra}"


@expected_errors
def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    argv = sys.argv[1:] if argv is None else argv
    budget, configs = parse_duration(args.budget), Path(args.configs).resolve()
    splits = Path(args.splits_dir or Path("data") / "splits" / args.name).resolve()
    report, decoder = diagnose(args)
    fp = fingerprint(report, decoder, args.image_ext, args.sbd_root)
    print(f"Fingerprint of {fp.root}: {len(fp.train_ids)} train, {len(fp.val_ids)} val images")
    found = candidates(fp, resolution(fp)[0])
    print(f"Probing {len(found)} setups (at most about {args.probe_seconds:g} s)...")
    timings = probe(found, fp.bands, len(fp.class_names), args.probe_seconds)
    for t in timings:
        c = t.candidate
        how = f"measured, peak {t.peak_mb} MiB" if t.measured else "estimated"
        print(f"  {c.backbone} {c.crop[0]}x{c.crop[1]} batch {c.batch_size}: "
              f"{t.seconds_per_step:.3f} s/step ({how})")  # fmt: skip
    plan = make_plan(fp, timings, budget, args.budget, str(splits), memory_mb())
    if plan.splits:
        write_splits(splits, plan.splits["train"], plan.splits["val"])
    trainer = "gpu" if torch.cuda.is_available() else "cpu"
    data = data_text(report, args, argv, doctor.parse_colours(args.void_colours))
    experiment = experiment_text(args.name, fp, plan, argv, trainer)
    for path in write_all(configs, args.name, data, experiment):
        print(f"Wrote {path}")
    for what, override in plan.assumed:
        print(f"Assumed: {what}.\n  To change: {override}")
    print(f"Train with:\n  {command(args.name, configs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
