"""A table of bad inputs: each ends in one paragraph naming the key or file, exit status 2.

Most cases run in-process through the same decorated ``main`` that ``python train.py`` and
``python evaluate.py`` run (Hydra calls it with the composed config); a few run the real
programs as subprocesses to check the plumbing end to end.
"""

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import FAST_TRAIN, REPO, compose, write_voc_tree
from PIL import Image

import evaluate
import export
import predict
import train
from seg import cli
from seg.checkpoint import RunLock
from seg.cli import expected_errors
from seg.doctor import cli as doctor
from seg.errors import ConfigError, RootNotFoundError
from seg.module import SegmentationModule

TRAIN = [*FAST_TRAIN, "data.crop_size=32", "data.batch_size=2", "logger=csv",
         "~callbacks.progress", "++trainer.enable_progress_bar=false"]  # fmt: skip

# Config keys, validated before any data is read: data.root points nowhere, yet the key is named.
CONFIG = {
    "lr zero": ("model.lr=0", "model.lr"),
    "lr negative": ("model.lr=-0.1", "model.lr"),
    "lr NaN": ("model.lr=nan", "model.lr"),
    "lr a word": ("model.lr=fast", "model.lr"),
    "batch size zero": ("data.batch_size=0", "data.batch_size"),
    "batch size fractional": ("data.batch_size=2.5", "data.batch_size"),
    "val batch size zero": ("data.val_batch_size=0", "data.val_batch_size"),
    "momentum one": ("model.momentum=1.0", "model.momentum"),
    "momentum negative": ("model.momentum=-0.5", "model.momentum"),
    "workers negative": ("data.num_workers=-1", "data.num_workers"),
    "crop zero": ("data.crop_size=0", "data.crop_size"),
    "crop three numbers": ("data.crop_size=[32,32,32]", "data.crop_size"),
    "crop negative side": ("data.crop_size=[32,-1]", "data.crop_size"),
    "scale range reversed": ("data.scale_range=[2.0,0.5]", "data.scale_range"),
    "scale range one number": ("data.scale_range=[2.0]", "data.scale_range"),
    "eval scale zero": ("model.eval_scale=0", "model.eval_scale"),
    "bn momentum zero": ("model.bn_momentum=0", "model.bn_momentum"),
    "bn momentum above one": ("model.bn_momentum=1.5", "model.bn_momentum"),
    "std with a zero": ("data.std=[0.2,0.0,0.2]", "data.std"),
    "mean of two channels": ("data.mean=[0.5,0.5]", "data.mean"),
    "std of four channels": ("data.std=[1,1,1,1]", "data.std"),
    "unknown layout": ("data.layout=folders", "choose one of voc, folder, auto"),
    "unknown arch": ("model.arch=fcn4s", "fcn32s, fcn16s, fcn8s"),
    "unknown backbone": ("model.backbone=vgg99", "model.backbone"),
    "unknown optimizer": ("model.optimizer=adam", "sgd, adamw"),
    "class weights of another length": ("model.class_weights=[1,2]", "model.class_weights"),
    "class weights unknown word": ("model.class_weights=inverse", "median_frequency"),
    "class weights negative": (f"model.class_weights=[{','.join(['-1'] * 21)}]", "class_weights"),
    "loss a list": ("model.loss=[ce,dice]", "model.loss=['ce', 'dice']"),
    "loss weight negative": ("model.loss={ce: -1.0}", "weights must be >= 0"),
    "loss weights all zero": ("model.loss={ce: 0.0}", "weighs every term 0"),
    "effective batch a word": ("+data.effective_batch_size=abc", "data.effective_batch_size"),
    "effective batch zero": ("+data.effective_batch_size=0", "data.effective_batch_size"),
    "max bad samples negative": ("data.max_bad_samples=-1", "data.max_bad_samples"),
    "network bands differ from the data's": ("model.in_channels=4", "data.in_channels=3"),
    "interpolation unresolved": ("model.lr=${oc.env:SEG_NOT_SET_ANYWHERE}", "SEG_NOT_SET_ANYWHERE"),
}
# Refused when the object is built: the message names the key.
BUILT = {
    "unknown data key": ("+data.colour=1", "data: got an unexpected keyword argument 'colour'"),
    "unknown model key": ("+model.dropout=0.5", "model: got an unexpected keyword argument"),
    "negative max_epochs": ("trainer.max_epochs=-5", "trainer: `max_epochs` must be"),
    "unknown precision": ("trainer.precision=17", "trainer: Precision 17 is invalid"),
    "unknown strategy": ("trainer.strategy=ddp_nope", "trainer: You selected an invalid strategy"),
    "FCN over the U-Net encoder": ("model.backbone=unet", "model: FCN with skip strides"),
}

# Damaged data: the file (or path) the message must name.
DATA = ["root missing", "split file missing", "split file empty", "image missing",
        "mask missing", "truncated JPEG", "image of random bytes", "RGB mask",
        "mask size mismatch", "label out of range", "unknown train split",
        "unknown val split"]  # fmt: skip

# Files given as checkpoints, and what the message must say about each.
FILES = {
    "missing": "does not exist",
    "directory": "is a directory",
    "empty": "empty (0 bytes)",
    "text": "could not be read",
    "random bytes": "could not be read",
    "number": "holds a int",
    "tensor": "holds a Tensor",
    "list": "holds a list",
    "plain pickle": "could not be read",
    "state_dict a list": "state_dict is missing or is not a dict",
    "another Lightning program": "a Lightning checkpoint of another program",
    "code in the pickle": "could run code",
    "truncated": "could not be read",
}
ROUTES = {"ckpt_path": "train", "init_from": "train", "evaluate": "eval"}

# A good checkpoint file that cannot continue this run, and what the message says.
RESUME = {
    "weights only (best)": "init_from=",
    "no Lightning keys": "not a training state",
    "other arch": "model.arch 'fcn32s' -> 'fcn8s'",
    "other backbone": "model.backbone 'resnet18' -> 'tiny'",
    "other class count": "model.num_classes 5 -> 21",
    "other optimizer": "model.optimizer 'adamw' -> 'sgd'",
    "older batch norm momentum": "model.bn_momentum None -> 0.1",
}

MISUSE = ["run directory locked", "run directory under a file", "weights file missing",
          "init_from all zeros", "eval glob matches nothing", "predict input missing",
          "export exporter unknown", "eval folder of bad checkpoints",
          "eval without ckpt_path", "doctor root missing"]  # fmt: skip


class Payload:
    """Unpickling this calls open(path, "w"): a checkpoint that would run code when loaded."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict:
    """A generated VOC tree and a full, train.py-shaped tiny FCN-8s checkpoint."""
    folder = tmp_path_factory.mktemp("good")
    root = write_voc_tree(folder / "voc", {"train": 4, "val": 2})
    module = SegmentationModule(arch="fcn8s", backbone="tiny", num_classes=21, weights=None)
    full = {"epoch": 0, "global_step": 2, "pytorch-lightning_version": pl.__version__,
            "state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
            "loops": {}, "optimizer_states": [], "lr_schedulers": []}  # fmt: skip
    torch.save(full, folder / "full.ckpt")
    return {"root": root, "full": full, "file": folder / "full.ckpt"}


def write_file(kind: str, path: Path, good: dict) -> Path:
    """A checkpoint file of ``kind`` (a key of FILES or RESUME) at ``path``."""
    full, hparams = good["full"], dict(good["full"]["hyper_parameters"])
    if kind == "directory":
        path.mkdir()
    elif kind in ("empty", "text", "random bytes", "truncated"):
        data = {"empty": b"", "text": b"epoch: 3\nlr: 0.1\n"}.get(kind)
        if kind == "random bytes":
            data = np.random.default_rng(0).bytes(4096)
        elif kind == "truncated":
            whole = good["file"].read_bytes()
            data = whole[: len(whole) // 2]
        path.write_bytes(data)
    elif kind == "plain pickle":
        path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    elif kind != "missing":
        contents = {
            "number": 3,
            "tensor": torch.zeros(3),
            "list": [1, 2],
            "state_dict a list": {"state_dict": [1, 2], "hyper_parameters": hparams},
            "another Lightning program": {**full, "hyper_parameters": {"lr": 0.1}},
            "code in the pickle": {**full, "hyper_parameters": {**hparams, "x": Payload(path)}},
            "weights only (best)": {k: full[k] for k in ("epoch", "global_step", "state_dict",
                                                         "hyper_parameters", "loops")},
            "no Lightning keys": {k: full[k] for k in ("state_dict", "hyper_parameters")},
            "other arch": {**full, "hyper_parameters": {**hparams, "arch": "fcn32s"}},
            "other backbone": {**full, "hyper_parameters": {**hparams, "backbone": "resnet18"}},
            "other class count": {**full, "hyper_parameters": {**hparams, "num_classes": 5}},
            "other optimizer": {**full, "hyper_parameters": {**hparams, "optimizer": "adamw"}},
            "older batch norm momentum": {
                **full, "hyper_parameters": {**hparams, "bn_momentum": None}
            },
        }[kind]  # fmt: skip
        torch.save(contents, path)
    return path


def break_data(case: str, root: Path) -> tuple[list[str], str]:
    """Damage a copy of the VOC tree; return the overrides and the name the message must hold."""
    images, masks = root / "JPEGImages", root / "SegmentationClass"
    splits = root / "ImageSets" / "Segmentation"
    if case == "root missing":
        return [f"data.root={root / 'nowhere'}"], str(root / "nowhere")
    if case.startswith("unknown"):
        key = "train_split" if "train" in case else "val_split"
        return [f"data.root={root}", f"data.{key}=nosuch"], "nosuch"
    named = {"split file missing": "train.txt", "split file empty": "train.txt"}.get(case)
    if case == "split file missing":
        (splits / "train.txt").unlink()
    elif case == "split file empty":
        (splits / "train.txt").write_text("\n")
    elif case == "image missing":
        (images / "train_0001.jpg").unlink()
        named = "train_0001.jpg"
    elif case == "mask missing":
        (masks / "val_0001.png").unlink()
        named = "val_0001.png"
    elif case == "truncated JPEG":
        data = (images / "train_0002.jpg").read_bytes()
        (images / "train_0002.jpg").write_bytes(data[: len(data) // 2])
        named = "train_0002.jpg"
    elif case == "image of random bytes":
        (images / "val_0000.jpg").write_bytes(np.random.default_rng(1).bytes(2000))
        named = "val_0000.jpg"
    else:
        mask = Image.open(masks / "val_0001.png")
        if case == "RGB mask":
            mask = mask.convert("RGB")
        elif case == "mask size mismatch":
            mask = mask.resize((mask.width + 4, mask.height))
        else:  # label out of range
            mask = Image.fromarray(np.full((mask.height, mask.width), 40, np.uint8))
        mask.save(masks / "val_0001.png")
        named = "val_0001.png"
    return [f"data.root={root}"], named


def run_main(program: str, overrides: list[str], out: Path, capsys) -> str:
    """Call the program's decorated ``main`` as Hydra would; return stderr, asserting exit 2."""
    cfg = compose(program, [*(TRAIN if program == "train" else []), *overrides], out)
    entry = {"train": train.main, "eval": evaluate.main, "predict": predict.main}.get(program)
    entry = entry or export.main
    with pytest.raises(SystemExit) as stopped:
        entry(cfg)
    err = capsys.readouterr().err
    assert stopped.value.code == 2, err
    return err


def assert_one_paragraph(err: str, named: str) -> None:
    assert "Traceback" not in err and named in err, err
    message = err[err.rindex("Error: ") :] if "Error: " in err else err
    assert "\n\n" not in message.strip() and len(message) < 1500, message


def keep_sentinel(run: Path) -> Path:
    """An earlier run's last.ckpt in ``run``: a refused run must leave it as it was."""
    sentinel = run / "checkpoints" / "last.ckpt"
    sentinel.parent.mkdir(parents=True)
    sentinel.write_bytes(b"earlier checkpoint")
    return sentinel


@pytest.mark.parametrize("case", CONFIG)
def test_bad_config(case, tmp_path, capsys):
    override, named = CONFIG[case]
    sentinel = keep_sentinel(tmp_path / "run")
    err = run_main("train", [override, f"data.root={tmp_path / 'nowhere'}"], tmp_path / "run",
                   capsys)  # fmt: skip
    assert "ConfigError" in err and "RootNotFoundError" not in err  # before the data
    assert_one_paragraph(err, named)
    assert sentinel.read_bytes() == b"earlier checkpoint"


@pytest.mark.parametrize("case", BUILT)
def test_bad_key_refused_when_built(case, good, tmp_path, capsys):
    override, named = BUILT[case]
    err = run_main("train", [override, f"data.root={good['root']}"], tmp_path / "run", capsys)
    assert "ConfigError" in err
    assert_one_paragraph(err, named)


@pytest.mark.parametrize("case", DATA)
def test_bad_data(case, good, tmp_path, capsys):
    root = Path(shutil.copytree(good["root"], tmp_path / "voc"))
    overrides, named = break_data(case, root)
    sentinel = keep_sentinel(tmp_path / "run")
    err = run_main("train", overrides, tmp_path / "run", capsys)
    assert_one_paragraph(err, named)
    assert [p.name for p in sentinel.parent.rglob("*")] == ["last.ckpt"]
    assert sentinel.read_bytes() == b"earlier checkpoint"


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("kind", FILES)
def test_unusable_checkpoint_file(kind, route, good, tmp_path, capsys):
    path = write_file(kind, tmp_path / f"{kind.replace(' ', '_')}.ckpt", good)
    key = "ckpt_path" if route == "evaluate" else route
    overrides = [f"{key}={path}", f"data.root={good['root']}"]
    err = run_main(ROUTES[route], overrides, tmp_path / "run", capsys)
    said = FILES[kind] if (kind, route) != ("directory", "evaluate") else "matches no checkpoint"
    assert "CheckpointError" in err and said in err  # evaluate searches a folder for .ckpt files
    assert_one_paragraph(err, str(path))
    assert ("could run code" in err) == (kind == "code in the pickle")
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


@pytest.mark.parametrize("kind", RESUME)
def test_checkpoint_that_cannot_resume_this_run(kind, good, tmp_path, capsys):
    path = write_file(kind, tmp_path / "other.ckpt", good)
    overrides = [f"ckpt_path={path}", f"data.root={good['root']}"]
    err = run_main("train", overrides, tmp_path / "run", capsys)
    assert "CheckpointError" in err and "init_from=" in err
    assert_one_paragraph(err, RESUME[kind])


def misuse(case: str, good: dict, tmp_path: Path) -> tuple[str, list[str], str]:
    """The program, overrides and named text of a misuse case (setting it up on disk)."""
    root = f"data.root={good['root']}"
    if case == "run directory under a file":
        (tmp_path / "afile").write_text("")
        return "train", [root], "afile"  # the run directory is tmp_path/afile/run
    if case == "weights file missing":
        weights = ["model.weights=/nonexistent/tiny.pth", "model.weights_required=true"]
        return "train", [root, *weights], "/nonexistent/tiny.pth"
    if case == "init_from all zeros":
        zeros = {k: torch.zeros_like(v) for k, v in good["full"]["state_dict"].items()}
        torch.save({**good["full"], "state_dict": zeros}, tmp_path / "zeros.ckpt")
        return "train", [root, f"init_from={tmp_path / 'zeros.ckpt'}"], "all of them are zero"
    if case == "eval glob matches nothing":
        return "eval", [root, f"ckpt_path='{tmp_path}/*.ckpt'"], "matches no checkpoint"
    if case == "predict input missing":
        missing = tmp_path / "photos"
        return "predict", [f"ckpt_path={good['file']}", f"input={missing}"], "photos"
    if case == "eval without ckpt_path":
        return "eval", [root, "ckpt_path=???"], "ckpt_path=<value>"
    if case == "export exporter unknown":
        return "export", [f"ckpt_path={good['file']}", "exporter=tflite"], "exporter=tflite"
    # eval folder of bad checkpoints: each is listed, none aborts the others
    (tmp_path / "ckpts").mkdir()
    for kind in ("empty", "text", "number"):
        write_file(kind, tmp_path / "ckpts" / f"{kind}.ckpt", good)
    return "eval", [root, f"ckpt_path={tmp_path / 'ckpts'}"], "empty.ckpt"


@pytest.mark.parametrize(
    ("option", "value"), [("--label-map", "3"), ("--label-map", "a:b"), ("--void-colours", "1,2")]
)
def test_doctor_options_that_do_not_parse(option, value, good, capsys):
    with pytest.raises(SystemExit) as stopped:
        doctor.main([str(good["root"]), option, value])
    assert stopped.value.code == 2
    assert_one_paragraph(capsys.readouterr().err, f"{option} {value!r}")


@pytest.mark.parametrize("case", MISUSE)
def test_misuse(case, good, tmp_path, capsys, monkeypatch):
    if case == "doctor root missing":  # the doctor reports data problems; errors pass as here

        def unreadable(*args):
            raise RootNotFoundError(f"data.root={tmp_path} cannot be read")

        monkeypatch.setattr(doctor, "diagnose", unreadable)
        with pytest.raises(SystemExit) as stopped:
            doctor.main([str(tmp_path)])
        assert stopped.value.code == 2
        return assert_one_paragraph(capsys.readouterr().err, str(tmp_path))
    if case == "run directory locked":
        with RunLock(tmp_path / "run"):
            err = run_main("train", [f"data.root={good['root']}"], tmp_path / "run", capsys)
        return assert_one_paragraph(err, f"{tmp_path / 'run'} is in use by pid {os.getpid()}")
    program, overrides, named = misuse(case, good, tmp_path)
    run = tmp_path / ("afile" if case == "run directory under a file" else "") / "run"
    err = run_main(program, overrides, run, capsys)
    assert_one_paragraph(err, named)
    if case == "eval folder of bad checkpoints":
        assert all(f"{k}.ckpt" in err for k in ("empty", "text", "number"))


def programs(*commands: list[str]) -> list[subprocess.CompletedProcess]:
    """Run the programs at the same time (each is mostly Python starting up); their results."""
    from concurrent.futures import ThreadPoolExecutor

    def one(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                              timeout=300)  # fmt: skip

    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(one, commands))


def test_hydra_full_error_and_unexpected_errors_keep_the_traceback(tmp_path, monkeypatch):
    """HYDRA_FULL_ERROR=1 lets an expected error through to Hydra's traceback; a bug always."""
    cfg = compose("train", [*TRAIN, "model.lr=0"], tmp_path / "run")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError, match="model.lr=0 is invalid"):
        train.main(cfg)
    monkeypatch.delenv("HYDRA_FULL_ERROR")

    @expected_errors
    def buggy() -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError, match="a bug"):
        buggy()


def test_the_real_programs_exit_2_without_a_traceback(tmp_path):
    """End to end: our error and Hydra's, one paragraph each, exit status 2, no traceback."""
    run = f"hydra.run.dir={tmp_path / 'run'}"
    ours, hydras = programs(
        ["train.py", *TRAIN, "model.lr=0", run],
        ["evaluate.py", "data=nosuch", f"ckpt_path={tmp_path / 'none.ckpt'}", run],
    )
    assert ours.returncode == 2 and "Traceback" not in ours.stderr, ours.stderr
    assert ours.stderr.strip().splitlines()[-1].startswith("ConfigError: model.lr=0 is invalid")
    assert hydras.returncode == 2 and "Traceback" not in hydras.stderr, hydras.stderr
    assert "Could not find 'data/nosuch'" in hydras.stderr  # Hydra's own message, exit status 2


def test_hydra_refusing_the_command_line_exits_2_and_a_bug_in_main_1(monkeypatch):
    def refused() -> None:
        sys.exit(1)  # as Hydra does after printing an unknown option

    monkeypatch.setattr(cli, "entered", False)
    with pytest.raises(SystemExit) as stopped:
        cli.run(refused)
    assert stopped.value.code == 2
    monkeypatch.setattr(cli, "entered", True)  # main ran: status 1 is a crash, kept
    with pytest.raises(SystemExit) as stopped:
        cli.run(refused)
    assert stopped.value.code == 1


def test_a_split_file_with_a_byte_order_mark_reads(good, tmp_path):
    root = Path(shutil.copytree(good["root"], tmp_path / "voc"))
    split = root / "ImageSets" / "Segmentation" / "train.txt"
    split.write_text("\ufeff" + split.read_text(), encoding="utf-8")
    metrics = train.train(compose("train", [*TRAIN, f"data.root={root}"], tmp_path / "run"))
    assert "val/mIoU" in metrics


def test_split_ids_may_not_leave_the_data_root(good, tmp_path, capsys):
    root = Path(shutil.copytree(good["root"], tmp_path / "voc"))
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(root / "JPEGImages" / "train_0000.jpg", outside / "secret.jpg")
    split = root / "ImageSets" / "Segmentation" / "train.txt"
    split.write_text(split.read_text() + "../../outside/secret\n")
    err = run_main("train", [f"data.root={root}"], tmp_path / "run", capsys)
    assert_one_paragraph(err, "../../outside/secret")
    assert "outside the dataset root" in err


def test_a_symlink_inside_the_root_stays_allowed(good, tmp_path):
    root = Path(shutil.copytree(good["root"], tmp_path / "voc"))
    elsewhere = tmp_path / "elsewhere.jpg"
    shutil.move(root / "JPEGImages" / "train_0000.jpg", elsewhere)
    (root / "JPEGImages" / "train_0000.jpg").symlink_to(elsewhere)
    assert "val/mIoU" in train.train(
        compose("train", [*TRAIN, f"data.root={root}"], tmp_path / "r")
    )


def test_a_full_disk_during_a_checkpoint_write_is_one_paragraph(
    good, tmp_path, capsys, monkeypatch
):
    """torch's zip writer fails as on a full disk; the earlier last.ckpt stays as it was."""
    sentinel = keep_sentinel(tmp_path / "run")

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed")

    monkeypatch.setattr("seg.checkpoint.write.torch.save", full)
    err = run_main("train", [f"data.root={good['root']}"], tmp_path / "run", capsys)
    assert_one_paragraph(err, "could not write the checkpoint")
    assert "disk may be full" in err and sentinel.read_bytes() == b"earlier checkpoint"
    assert not list((tmp_path / "run" / "checkpoints").glob(".*.tmp"))


def test_a_run_directory_hydra_cannot_make_is_one_paragraph(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("")
    run = f"hydra.run.dir={tmp_path / 'afile' / 'run'}"
    for done in programs(["train.py", run, "ckpt_path=x"], ["evaluate.py", run, "ckpt_path=x"]):
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "afile is a file, not a folder" in done.stderr
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only mount
    problem = cli.run_dir_problem([f"hydra.run.dir={tmp_path / 'new' / 'run'}"])
    assert problem and f"{tmp_path} is not writable" in problem


def test_the_doctor_lists_masks_without_images(good, tmp_path, capsys):
    root = Path(shutil.copytree(good["root"], tmp_path / "voc"))
    shutil.copy(
        root / "SegmentationClass" / "val_0000.png", root / "SegmentationClass" / "orphan_9.png"
    )
    report = doctor.diagnose(root)
    assert [p for p in report.problems if "orphan_9.png" in p and "no image" in p], report.problems


def test_predict_and_export_skip_and_list_the_bad_items_of_a_folder(good, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a", "b"):
        shutil.copy(good["root"] / "JPEGImages" / "train_0000.jpg", photos / f"{name}.jpg")
    (photos / "broken.jpg").write_bytes(b"not an image")
    done = predict.predict(compose("predict", [f"ckpt_path={good['file']}", f"input={photos}"],
                                   tmp_path / "p"))  # fmt: skip
    assert len(done["predictions"]) == 2 and list(done["skipped"]) == [str(photos / "broken.jpg")]
    assert "skipped" in capsys.readouterr().err
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    shutil.copy(good["file"], ckpts / "good.ckpt")
    write_file("text", ckpts / "bad.ckpt", good)
    done = export.export(compose("export", [f"ckpt_path={ckpts}", "exporter=torchscript"],
                                 tmp_path / "e"))  # fmt: skip
    assert len(done["exported"]) == 1 and list(done["skipped"]) == [str(ckpts / "bad.ckpt")]


def test_predict_names_the_checkpoints_bands_not_a_data_key(good, tmp_path, capsys):
    module = SegmentationModule("fcn8s", "tiny", num_classes=21, in_channels=4,
                                mean=[0.5] * 4, std=[0.2] * 4)  # fmt: skip
    full = {
        **good["full"],
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
    }
    torch.save(full, tmp_path / "four.ckpt")
    photo = good["root"] / "JPEGImages" / "train_0000.jpg"
    err = run_main("predict", [f"ckpt_path={tmp_path / 'four.ckpt'}", f"input={photo}"],
                   tmp_path / "p", capsys)  # fmt: skip
    assert_one_paragraph(err, "4 bands the checkpoint four.ckpt reads")
    assert "data.in_channels" not in err


class BreakImage(pl.Callback):
    """Make one training image unreadable once training has started (at step ``step``)."""

    def __init__(self, path: str, step: int = 1) -> None:
        self.path, self.step = Path(path), step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            self.path.write_bytes(b"gone bad")


@pytest.mark.parametrize("allowed", [10, 0])
def test_a_training_image_that_breaks_mid_run_is_skipped_up_to_a_limit(
    allowed, good, tmp_path, capsys
):
    root = Path(shutil.copytree(good["root"], tmp_path / "voc"))
    broken = root / "JPEGImages" / "train_0001.jpg"
    hook = ["+callbacks.breaks._target_=test_bad_input.BreakImage",
            f"+callbacks.breaks.path={broken}", f"data.max_bad_samples={allowed}"]  # fmt: skip
    if allowed:
        metrics = train.train(
            compose("train", [*TRAIN, f"data.root={root}", *hook], tmp_path / "r")
        )
        assert "val/mIoU" in metrics
        return
    err = run_main("train", [f"data.root={root}", *hook], tmp_path / "r", capsys)
    assert_one_paragraph(err, "train_0001.jpg")
    assert "data.max_bad_samples=0" in err and (tmp_path / "r" / "checkpoints").is_dir()
