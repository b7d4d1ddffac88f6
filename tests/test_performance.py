"""Throughput switches and their benchmarks: the config keys reach torch, the scripts run tiny."""

import json
from types import SimpleNamespace

import pytest
import torch
from conftest import FAST_TRAIN, compose, shared_data

import train as train_script
from benchmarks import levers, profile
from benchmarks.common import count_flops
from benchmarks.steps import Setup, inputs
from benchmarks.zoo import build
from seg.module import SegmentationModule

TINY = ["--model", "fcn8s/tiny", "--batch-size", "2", "--crop", "64", "64", "--warmup", "0"]


def table(path, title: str) -> list[dict]:
    return json.loads(path.read_text())["tables"][title]


def optimizer(**hparams) -> torch.optim.Optimizer:
    module = SegmentationModule("fcn8s", "tiny", num_classes=2, **hparams)
    module.trainer = SimpleNamespace(estimated_stepping_batches=10, max_steps=-1)
    return module.configure_optimizers()["optimizer"]


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_optimizer_impl_reaches_torch(name):
    assert optimizer(optimizer=name, optimizer_impl="fused").defaults["fused"] is True
    assert optimizer(optimizer=name, optimizer_impl="foreach").defaults["foreach"] is True
    assert optimizer(optimizer=name, optimizer_impl="for_loop").defaults["foreach"] is False
    auto = optimizer(optimizer=name).defaults
    assert auto["foreach"] is None and not auto["fused"]  # torch decides


def test_unknown_optimizer_impl_or_compile_mode_lists_the_valid_ones():
    with pytest.raises(ValueError, match="model.optimizer_impl='fast'.*foreach, fused"):
        SegmentationModule("fcn8s", "tiny", num_classes=2, optimizer_impl="fast")
    with pytest.raises(ValueError, match="model.compile_mode='max'.*max-autotune"):
        SegmentationModule("fcn8s", "tiny", num_classes=2, compile_mode="max")


def test_compile_mode_reaches_torch_compile(monkeypatch):
    modes = []
    monkeypatch.setattr(torch, "compile", lambda model, mode: modes.append(mode) or model)
    module = SegmentationModule(
        "fcn8s", "tiny", num_classes=2, compile=True, compile_mode="max-autotune-no-cudagraphs"
    )
    module.eval()
    assert module(torch.randn(1, 3, 32, 32)).shape == (1, 2, 32, 32)
    module(torch.randn(1, 3, 32, 32))
    assert modes == ["max-autotune-no-cudagraphs"]  # compiled once


def test_trainer_gpu_sets_what_a_gpu_user_expects(tmp_path, monkeypatch):
    cfg = compose("train", ["trainer=gpu"], tmp_path)
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.benchmark is True
    # the rest follows from the device: NHWC and pinned batches on CUDA, not on a CPU
    assert cfg.model.channels_last == "auto" and cfg.data.pin_memory is None
    assert cfg.data.persistent_workers is True
    assert cfg.trainer.precision == "auto-mixed"
    # On a CPU the same defaults resolve to bf16 autocast where the CPU has bf16 instructions
    # and to fp32 where bf16 would be emulated; on an fp16-only GPU to 16-mixed.
    cpu = compose("train", ["trainer=gpu", "trainer.accelerator=cpu"], tmp_path)
    for native, precision in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(train_script, "cpu_has_bf16", lambda native=native: native)
        assert train_script.build_trainer(cpu).precision == precision
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert train_script.auto_mixed_precision("gpu") == "16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert train_script.auto_mixed_precision("gpu") == "bf16-mixed"


def test_cpu_bf16_is_read_from_the_cpus_flags(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16\n")
    import seg.training

    real = seg.training.Path
    monkeypatch.setattr(
        seg.training, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real(p)
    )
    assert train_script.cpu_has_bf16()
    cpuinfo.write_text("flags\t\t: fpu avx2 fma\n")
    assert not train_script.cpu_has_bf16()


def test_num_threads_sets_torch_threads(voc_root, tmp_path):
    before = torch.get_num_threads()
    overrides = [*FAST_TRAIN, f"data.root={voc_root}", "trainer.max_epochs=1", "num_threads=1"]
    overrides += ["data.batch_size=2", "data.crop_size=[32,32]"]
    overrides += ["++trainer.limit_train_batches=1", "++trainer.limit_val_batches=1"]
    try:
        train_script.train(compose("train", overrides, tmp_path))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_profile_splits_the_step_and_counts_every_convolution_flop(tmp_path):
    out = tmp_path / "p.json"
    profile.main([*TINY, "--synthetic", "--steps", "2", "--matmul-size", "64", "--out", str(out)])
    rows = {r["category"]: r for r in table(out, "Training step by category")}
    assert list(rows) == profile.CATEGORIES
    assert sum(r["share %"] for r in rows.values()) == pytest.approx(100, abs=1)
    assert all(rows[c]["ms/step"] > 0 for c in ("conv forward", "batch norm", "optimizer"))
    # Known answers: the FLOPs of the profiled convolutions are torch's count of one train step;
    # each weight gradient costs its forward; the first convolution has no input gradient.
    model = build("fcn8s/tiny", 11)
    images = inputs(Setup("fcn8s/tiny", True, 2, (64, 64), 11))[0]
    counted = sum(r.get("GFLOP/step", 0) for r in rows.values())
    assert counted * 1e9 == pytest.approx(count_flops(model, images, train=True), rel=1e-9)
    forward = rows["conv forward"]["GFLOP/step"]
    assert rows["conv backward-weight"]["GFLOP/step"] == pytest.approx(forward)
    assert 0 < rows["conv backward-data"]["GFLOP/step"] < forward
    # Under CPU bf16 autocast the convolutions run in bf16 and the FCN upsamplers in fp32.
    assert rows["conv forward"]["dtype"] == "bf16" and rows["upsampling"]["dtype"] == "32"
    assert 0 < rows["conv forward"]["% of peak"]


def test_profile_on_camvid_waits_for_data(tmp_path):
    root = shared_data("camvid")
    out = tmp_path / "p.json"
    args = ["--root", str(root), "--workers", "0", "--steps", "2", "--matmul-size", "64"]
    profile.main([*TINY, *args, "--out", str(out)])
    rows = {r["category"]: r for r in table(out, "Training step by category")}
    assert rows["data wait"]["ms/step"] > 0  # decoding and augmenting in the main process


def test_levers_one_round_each(tmp_path, monkeypatch):
    monkeypatch.setattr(levers.allocator, "find", lambda name: None)  # as if not installed
    out = tmp_path / "l.json"
    only = ["--only", "optimizer", "upsamplers", "batch", "threads", "allocator"]
    args = ["--iters", "1", "--batch-sizes", "4", "--threads", "1", "--out", str(out)]
    levers.main([*TINY, *only, *args])
    rows = table(out, "Each lever against the recipe's step")
    assert [r["lever"] for r in rows] == [
        "AdamW foreach", "AdamW fused", "upsamplers in bf16", "batch 4",
        "set_num_threads(1)", "tcmalloc", "jemalloc",
    ]  # fmt: skip
    assert all(r["ratio B/A"] > 0 for r in rows[:5])
    batch = rows[3]
    assert batch["notes"] == f"images/s ratio {batch['ratio B/A'] * 4 / 2:.2f}"
    assert rows[5]["notes"] == "not installed: apt-get install libtcmalloc-minimal4"
    assert torch.get_num_threads() == json.loads(out.read_text())["machine"]["torch_threads"]


def test_levers_loader_on_camvid(tmp_path):
    root = shared_data("camvid")
    out = tmp_path / "l.json"
    args = ["--only", "loader", "--root", str(root), "--workers", "0", "--loader-workers", "0"]
    levers.main([*TINY, *args, "--iters", "1", "--out", str(out)])
    (row,) = table(out, "Each lever against the recipe's step")
    assert row["lever"] == "0 loader workers" and row["ratio B/A"] > 0


@pytest.mark.slow
def test_levers_compile_and_preloaded_allocators(tmp_path):
    out = tmp_path / "l.json"
    args = ["--only", "compile", "allocator", "--iters", "1", "--rounds", "1", "--out", str(out)]
    levers.main([*TINY, *args])
    rows = table(out, "Each lever against the recipe's step")
    assert rows[0]["lever"] == "torch.compile mode=default"
    assert rows[0]["notes"].startswith("first call") and rows[0]["ratio B/A"] > 0
    for row in rows[2:]:  # measured where the library is installed, else its apt package
        assert row.get("ratio B/A", 0) > 0 or row["notes"].startswith("not installed")


def test_channels_last_auto_is_nhwc_on_cuda_only(monkeypatch):
    from seg.config import check_model
    from seg.errors import ConfigError

    auto = SegmentationModule("fcn8s", "tiny", num_classes=2)
    assert auto.hparams.channels_last == "auto" and not auto.nhwc()
    conv = next(m for m in auto.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()  # NCHW on a CPU
    monkeypatch.setattr(SegmentationModule, "device", torch.device("cuda"))
    assert auto.nhwc()
    forced = SegmentationModule("fcn8s", "tiny", num_classes=2, channels_last=True)
    conv = next(m for m in forced.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ConfigError, match="model.channels_last='yes' is invalid"):
        check_model({"channels_last": "yes"}, 2)
