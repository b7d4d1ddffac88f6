"""Benchmarks: each script runs one iteration on tiny settings; their helpers give known answers."""

import json
import sys
import time
from types import SimpleNamespace

import pytest
import torch
from conftest import shared_data, skip_or_fail
from torch import nn

from benchmarks import data_pipeline, learning, options, overhead, peers, roofline, throughput
from benchmarks.common import count_flops, markdown_table
from benchmarks.steps import Setup, peak_memory_mb
from benchmarks.zoo import available, bf16_upsamplers, build
from seg.models.layers import UpConv

TINY = ["--batch-size", "1", "--crop", "64", "64", "--warmup", "0", "--iters", "1"]


def tables(path) -> dict[str, list[dict]]:
    data = json.loads(path.read_text())
    assert data["machine"]["torch"] == torch.__version__
    return data["tables"]


@pytest.mark.parametrize("groups", [1, 8])
def test_flop_count_of_a_convolution_is_two_per_multiply_add(groups):
    conv = nn.Conv2d(8, 16, 3, padding=1, groups=groups, bias=False)
    images = torch.randn(1, 8, 10, 12)
    forward = 2 * (8 // groups) * 16 * 9 * 10 * 12
    assert count_flops(conv, images, train=False) == forward
    # backward: gradients of the input and of the weight, one forward's worth each (torch's own
    # counter counts a grouped weight gradient `groups` times over)
    assert count_flops(conv, images.requires_grad_(), train=True) == 3 * forward


def test_flop_count_of_a_transposed_convolution():
    up = nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1, bias=False)
    x = torch.randn(2, 4, 5, 6, requires_grad=True)
    forward = 2 * 2 * 4 * 4 * 16 * 5 * 6  # each input pixel meets every kernel tap
    assert count_flops(up, x, train=False) == forward
    assert count_flops(up, x, train=True) == 3 * forward


def test_markdown_table_and_budget_duration():
    table = markdown_table([{"a": 1.23456, "b": "x"}, {"a": 12345.6}], ["a", "b"])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1.23 | x |", "| 12,346 |  |"]
    assert learning.duration(0.2) == "00:00:00:01"
    assert learning.duration(3 * 3600 + 125) == "00:03:02:05"


def test_time_poly_decays_the_learning_rate_over_the_budget():
    weight = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [weight]}, {"params": [], "lr": 2.0}], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1.0)
    trainer = SimpleNamespace(lr_scheduler_configs=[SimpleNamespace(scheduler=sched)])
    module = SimpleNamespace(hparams=SimpleNamespace(poly_power=1.0, warmup_iters=0))
    learning.TimePoly(seconds=0.2).on_train_start(trainer, module)
    sched.step()
    assert 0.5 < opt.param_groups[0]["lr"] <= 1.0 and opt.param_groups[1]["lr"] > 1.0
    time.sleep(0.25)
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [0.0, 0.0]


def test_throughput_one_iteration(tmp_path):
    out = tmp_path / "t.json"
    args = ["--backbones", "tiny", "--archs", "fcn8s", *TINY, "--no-memory", "--out", str(out)]
    throughput.main(args)
    (row,) = tables(out)["Train and inference per network"]
    assert row["model"] == "fcn8s/tiny" and row["train img/s"] > 0 and row["infer img/s"] > 0
    assert row["train GFLOP/img"] > row["infer GFLOP/img"] > 0


def test_peak_memory_probe_sees_the_activations():
    """A training step at batch 4 and 256x256 holds far more than the 0.7 MB of weights."""
    mib = peak_memory_mb(Setup("fcn8s/tiny", train=True, batch_size=4, crop=(256, 256)))
    assert 5 < mib < 4096


def test_roofline_one_iteration(tmp_path):
    out = tmp_path / "r.json"
    args = ["--models", "unet/tiny", "--matmul-size", "128", *TINY, "--out", str(out)]
    roofline.main(args)
    result = tables(out)
    assert [p["dtype"] for p in result["Dense matmul peak"]] == ["32", "bf16"]
    rows = result["Networks against the peak"]
    assert [r["precision"] for r in rows] == ["32", "bf16"]
    assert all(0 < r["train % of peak"] and 0 < r["infer % of peak"] for r in rows)


def test_options_one_iteration_without_compile(tmp_path):
    out = tmp_path / "s.json"
    args = ["--model", "fcn8s/tiny", "--batch-size", "1", "--crop", "64", "64", "--warmup", "0"]
    options.main([*args, "--iters", "1", "--no-compile", "--out", str(out)])
    rows = tables(out)["Speed options"]
    assert [r["variant"] for r in rows] == [
        "fp32", "fp32 + channels_last", "bf16", "bf16 + channels_last",
        "bf16 + channels_last, upsamplers bf16",
    ]  # fmt: skip
    assert rows[0]["train speed-up"] == 1.0 and all(r["infer img/s"] > 0 for r in rows)


def test_overhead_one_round(tmp_path):
    out = tmp_path / "o.json"
    args = ["--model", "fcn8s/tiny", "--batch-size", "1", "--crop", "64", "64", "--steps", "3"]
    overhead.main([*args, "--rounds", "1", "--warmup", "0", "--out", str(out)])
    rows = tables(out)["Bare loop vs our module and Trainer"]
    assert [r["loop"] for r in rows][0] == "bare PyTorch" and rows[0]["speed vs bare"] == 1.0
    assert len(rows) == 3 and all(r["img/s"] > 0 for r in rows)


def run_peers(pair: list[str], tmp_path) -> dict:
    reason = available(pair[0])
    if reason:
        skip_or_fail(reason)
    out = tmp_path / "p.json"
    peers.main(["--pair", *pair, *TINY, "--no-memory", "--out", str(out)])
    (row,) = tables(out)["Ours against each peer"]
    assert [row["peer"], row["ours"]] == pair
    assert row["train speed ours/peer"] > 0 and row["infer speed ours/peer"] > 0
    return row


def test_peers_one_iteration_on_a_small_pair(tmp_path):
    row = run_peers(["smp:Unet/resnet18", "unet/resnet18"], tmp_path)
    assert row["params (M) peer"] > 10 and row["GFLOP/img peer"] > 0


def test_a_missing_peer_is_skipped_with_its_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "segmentation_models_pytorch", None)  # import fails
    assert "pip install segmentation-models-pytorch" in available("smp:Unet/resnet34")
    out = tmp_path / "p.json"
    peers.main(["--pair", "smp:Unet/resnet34", "unet/resnet34", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["tables"]["Ours against each peer"] == []
    assert "segmentation-models-pytorch" in data["settings"]["skipped"]["smp:Unet/resnet34"]


@pytest.mark.slow
@pytest.mark.parametrize("peer", list(peers.PAIRS))
def test_each_default_peer_pair_one_iteration(peer, tmp_path):
    run_peers([peer, peers.PAIRS[peer]], tmp_path)


def test_bf16_upsamplers_swap_upconv_for_the_plain_layer_with_the_same_weights():
    model = build("fcn8s/tiny", 5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    plain = bf16_upsamplers(model)
    assert not any(isinstance(m, UpConv) for m in plain.modules())
    assert sum(type(m) is nn.ConvTranspose2d for m in plain.modules()) == 3  # x2, x2, x8
    after = plain.state_dict()
    assert after.keys() == state.keys()
    assert all(torch.equal(after[k], state[k]) for k in state)


def test_peers_return_logits_at_input_size():
    for name in ["fcn8s/tiny", *peers.PAIRS]:
        if available(name) is None:
            assert build(name, 5)(torch.randn(1, 3, 64, 96)).shape == (1, 5, 64, 96), name


def test_data_pipeline_one_round_on_camvid(tmp_path):
    root = shared_data("camvid")
    out = tmp_path / "d.json"
    args = ["--root", str(root), "--model", "fcn8s/tiny", "--workers", "0", "--default-workers"]
    data_pipeline.main(
        [
            *args,
            "0",
            "--batch-size",
            "2",
            "--crop",
            "64",
            "64",
            "--batches",
            "2",
            "--rounds",
            "1",
            "--out",
            str(out),
        ]
    )
    rows = tables(out)["DataLoader against training"]
    assert [r["what"] for r in rows] == [
        "training consumes (in-memory batch)",
        "loader alone",
        "training fed by the loader",
    ]
    assert all(r["samples/s"] > 0 for r in rows)


def test_learning_one_short_budget_on_camvid(tmp_path):
    root = shared_data("camvid")
    out = tmp_path / "l.json"
    fast = [
        "data.crop_size=[64,64]",
        "data.batch_size=2",
        "data.num_workers=0",
        "data.persistent_workers=false",
        "++trainer.limit_val_batches=2",
    ]
    learning.main(
        [
            "--root",
            str(root),
            "--models",
            "fcn8s/tiny",
            "--minutes",
            "0.05",
            "--override",
            *fast,
            "--out",
            str(out),
        ]
    )
    (row,) = tables(out)["CamVid val after a fixed budget"]
    assert row["model"] == "fcn8s/tiny" and row["steps"] >= 1
    assert 0 <= row["val mIoU"] <= 1 and 0 < row["val pixel_acc"] <= 1


def test_tile_memory_runs_predict_on_written_geotiffs(tmp_path):
    pytest.importorskip("rasterio")
    pytest.importorskip("onnxruntime")
    from benchmarks import tile_memory

    out = tmp_path / "m.json"
    tile_memory.main(["--sides", "300", "--classes", "3", "--threads", "1", "--out", str(out)])
    (rows,) = tables(out).values()
    assert [r["image"] for r in rows] == ["300x300, 3 bands uint8", "300x300, 4 bands uint16"]
    for row in rows:  # a real process's peak: the interpreter and onnxruntime at least
        assert 50 < row["peak RSS MiB"] < 4096 and row["seconds"] > 0
        assert row["whole-image logits MiB"] == 300 * 300 * 3 * 4 / 2**20


def test_plan_kinds_hold_the_camvid_frames_they_claim(tmp_path, monkeypatch):
    import numpy as np
    import tifffile
    from PIL import Image

    from benchmarks import plan_kinds

    monkeypatch.setattr(plan_kinds, "CAMVID", shared_data("camvid"))
    train, held = plan_kinds.camvid_ids()
    assert (len(train), len(held)) == (266, 101)  # 0001TP + 0016E5, and the street 0006R0
    assert {i[:6] for i in train} == {"0001TP", "0016E5"} and {i[:6] for i in held} == {"0006R0"}
    pairs = [plan_kinds.camvid_pair(i) for i in held[:4]]
    image, mask = plan_kinds.mosaic(held[:4])
    assert image.shape == (720, 960, 3) and mask.shape == (720, 960)
    for (y, x), (frame, labels) in zip(
        [(0, 0), (0, 480), (360, 0), (360, 480)], pairs, strict=True
    ):
        assert np.array_equal(image[y : y + 360, x : x + 480], frame)
        assert np.array_equal(mask[y : y + 360, x : x + 480], labels)
    frame, labels = pairs[0]
    for kind in ("multiband16", "grey", "binary"):
        plan_kinds.write(tmp_path / kind, "train", "f", frame, labels, kind)
    bands = tifffile.imread(tmp_path / "multiband16" / "images" / "train" / "f.tif")
    assert bands.shape == (360, 480, 4) and bands.dtype == np.uint16
    assert np.array_equal(bands[..., :3], frame.astype(np.uint16) * 257) and bands[..., 3].std() > 0
    assert Image.open(tmp_path / "grey" / "images" / "train" / "f.png").mode == "L"
    binary = np.asarray(Image.open(tmp_path / "binary" / "masks" / "train" / "f.png"))
    assert set(np.unique(binary)) <= {0, 255} and (labels == plan_kinds.CAR).any()
    assert np.array_equal(binary == 255, labels == plan_kinds.CAR)


def test_plan_kinds_scores_an_arm_by_its_last_validation(tmp_path):
    from benchmarks import plan_kinds

    log = tmp_path / "csv" / "version_0"
    log.mkdir(parents=True)
    (log / "metrics.csv").write_text(
        "epoch,step,train/loss,val/mIoU\n0,9,1.5,\n0,9,,0.25\n1,19,1.2,\n1,19,,0.375\n1,20,1.1,\n"
    )
    assert plan_kinds.last_val(tmp_path) == {"mIoU": 37.5, "step": 19}
    assert plan_kinds.last_val(tmp_path / "none") == {}
