"""Render an evaluation report in headless Chromium and save a screenshot of it.

    python -m benchmarks.report_screenshot                  # short CamVid run, then evaluate
    python -m benchmarks.report_screenshot --run <run dir>  # evaluate an existing run
    python -m benchmarks.report_screenshot --report <dir or report.html>

The short run is the CamVid recipe at a third of CamVid's scale for 60 steps (3 epochs of 20
batches of 4, a periodic checkpoint each): 28 minutes on 2 CPU cores shared with other jobs.
Its three periodic checkpoints are evaluated on CamVid val, and the page is rendered by
Debian's ``chromium`` (``apt-get install chromium``) with networking off. The screenshot is
checked not to be blank and written to docs/report.png, which README.md shows.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHORT_RUN = [
    "experiment=camvid",
    "trainer.max_epochs=3",
    "+trainer.limit_train_batches=20",
    "trainer.check_val_every_n_epoch=1",
    "callbacks.periodic.every_n_epochs=1",
    "data.batch_size=4",
    "data.base_size=120",
    "data.crop_size=[112,144]",
    "model.eval_scale=0.3333",
    "data.num_workers=1",
]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--hide-scrollbars",
]


def run(command: list[str], quiet: bool = False) -> None:
    """Run a command from the repository root; ``quiet`` shows its stderr only if it fails."""
    print("+", " ".join(command), flush=True)
    done = subprocess.run(command, cwd=REPO, stderr=subprocess.PIPE if quiet else None, text=True)
    if done.returncode:
        raise SystemExit(f"{command[0]} failed with status {done.returncode}\n{done.stderr or ''}")


def short_run(root: Path, out: Path) -> Path:
    """Train the short CamVid run into out/run; return the run directory."""
    run_dir = out / "run"
    overrides = [f"data.root={root}", f"paths.output_dir={run_dir}", f"hydra.run.dir={run_dir}"]
    run([sys.executable, "train.py", *SHORT_RUN, *overrides])
    return run_dir


def evaluate_run(run_dir: Path, root: Path, out: Path) -> Path:
    """Evaluate the run's periodic checkpoints on CamVid val; return report.html."""
    eval_dir = out / "eval"
    checkpoints = f"ckpt_path='{run_dir}/checkpoints/periodic/*.ckpt'"
    paths = [f"paths.output_dir={eval_dir}", f"hydra.run.dir={eval_dir}"]
    run([sys.executable, "evaluate.py", "data=camvid", f"data.root={root}", checkpoints, *paths])
    return eval_dir / "report.html"


def screenshot(page: Path, target: Path, size: tuple[int, int] = (1280, 2700)) -> np.ndarray:
    """The page rendered by headless Chromium at ``size`` (width, height), as RGB."""
    with tempfile.TemporaryDirectory() as profile:
        flags = [
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
        ]
        run(["chromium", *flags, f"--screenshot={target}", page.resolve().as_uri()], quiet=True)
    return np.asarray(Image.open(target).convert("RGB"))


def check_not_blank(picture: np.ndarray) -> None:
    """Refuse a screenshot of one colour or nearly so (a page that failed to render)."""
    colours = len(np.unique(picture.reshape(-1, 3), axis=0))
    if colours < 200 or picture.std() < 20:
        raise SystemExit(f"the screenshot looks blank: {colours} colours, std {picture.std():.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared/data/camvid")
    parser.add_argument("--run", type=Path, help="a training run directory to evaluate")
    parser.add_argument("--report", type=Path, help="an existing report.html or its folder")
    parser.add_argument("--out", type=Path, default=REPO / "docs/report.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2700)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="report_"))
    page = args.report
    if page is None:
        run_dir = args.run or short_run(args.root, work)
        page = evaluate_run(run_dir, args.root, work)
    elif page.is_dir():
        page = page / "report.html"
    raw = work / "screenshot.png"
    picture = screenshot(page, raw, (args.width, args.height))
    check_not_blank(picture)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(picture).quantize(colors=256, dither=Image.Dither.NONE)
    image.save(args.out, optimize=True)
    print(f"{args.out}: {picture.shape[1]}x{picture.shape[0]}, {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
