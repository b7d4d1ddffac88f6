"""Peers on the same input: their networks against ours, timed alternately in one process.

    pip install -r benchmarks/requirements.txt   # the peers (see benchmarks/README.md)
    python -m benchmarks.peers

Pairs: torchfcn (pytorch-fcn) FCN8s vs our fcn8s/vgg16; segmentation_models_pytorch
Unet("resnet34") vs our unet/resnet34; torchvision fcn_resnet50 vs our fcn8s/resnet50. A ratio
above 1 means ours is faster (or, for memory, smaller). mIoU comes from the learning benchmark's
JSON when it trained both networks of a pair.
"""

import json

import torch

from benchmarks.common import RESULTS, base_parser, machine_info, report
from benchmarks.throughput import COLUMNS, add_measure_flags, measure
from benchmarks.zoo import available

PAIRS = {
    "torchfcn:FCN8s": "fcn8s/vgg16",
    "smp:Unet/resnet34": "unet/resnet34",
    "torchvision:fcn_resnet50": "fcn8s/resnet50",
}
RATIO_COLUMNS = [
    "peer",
    "ours",
    "train speed ours/peer",
    "infer speed ours/peer",
    "train memory peer/ours",
    "infer memory peer/ours",
    "GFLOP/img peer",
    "GFLOP/img ours",
    "params (M) peer",
    "params (M) ours",
    "mIoU peer",
    "mIoU ours",
]


def trained_miou() -> dict[str, float]:
    """Validation mIoU per network from results/learning.json, if that benchmark has run."""
    path = RESULTS / "learning.json"
    if not path.is_file():
        return {}
    rows = next(iter(json.loads(path.read_text())["tables"].values()))
    return {row["model"]: row["val mIoU"] for row in rows if "val mIoU" in row}


def ratios(peer: dict, ours: dict, miou: dict[str, float]) -> dict:
    row = {"peer": peer["model"], "ours": ours["model"]}
    for mode in ("train", "infer"):
        row[f"{mode} speed ours/peer"] = ours[f"{mode} img/s"] / peer[f"{mode} img/s"]
        if f"{mode} peak MiB" in ours:
            row[f"{mode} memory peer/ours"] = peer[f"{mode} peak MiB"] / ours[f"{mode} peak MiB"]
    for who, source in (("peer", peer), ("ours", ours)):
        row[f"GFLOP/img {who}"] = source["infer GFLOP/img"]
        row[f"params (M) {who}"] = source["params (M)"]
        row[f"mIoU {who}"] = miou.get(source["model"], "")
    return row


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--peers", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument(
        "--pair",
        nargs=2,
        action="append",
        metavar=("PEER", "OURS"),
        help="compare these instead, e.g. --pair smp:Unet/resnet18 unet/resnet18",
    )
    add_measure_flags(parser)
    args = parser.parse_args(argv)
    rows, pair_rows, skipped = [], [], {}
    miou = trained_miou()
    pairs = dict(args.pair) if args.pair else {peer: PAIRS[peer] for peer in args.peers}
    for peer, ours in pairs.items():
        reason = available(peer)
        if reason:
            skipped[peer] = reason
            print(f"skipping {peer}: {reason}", flush=True)
            continue
        peer_row, our_row = measure([peer, ours], args)
        rows += [peer_row, our_row]
        pair_rows.append(ratios(peer_row, our_row, miou))
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    settings["precision"] = args.precision or ("16" if args.device == "cuda" else "bf16")
    settings["skipped"] = skipped
    tables = {"Ours against each peer": (pair_rows, RATIO_COLUMNS), "Networks": (rows, COLUMNS)}
    report("peers", machine_info(torch.device(args.device)), settings, tables, args.out)


if __name__ == "__main__":
    main()
