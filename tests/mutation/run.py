"""Plant each bug of mutants.py in a scratch copy of the repository; report which the tests catch.

    python tests/mutation/run.py                 # every mutant (about 15 min on 2 busy cores)
    python tests/mutation/run.py --only "fwIoU"  # mutants whose name contains a word
    python tests/mutation/run.py --list

The copy (the working tree without .git, .venv and outputs) lives in a temporary directory; each
mutant is applied, its tests run with ``-x`` under a timeout, and the file restored. Each row
names the mutant, its file, the verdict and the first test that failed. An unmutated run of
every selected test file comes first: a mutant only counts as caught against a green start.
Run by hand, not in CI.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mutants import MUTANTS, Mutant

REPO = Path(__file__).resolve().parents[2]
IGNORE = shutil.ignore_patterns(".git", ".venv", "outputs", "multirun", "__pycache__", ".*_cache")


def pytest(copy: Path, args: tuple[str, ...], timeout: float) -> tuple[str, float, str]:
    """Run pytest in the copy: 'pass', 'fail' or 'timeout', the seconds, the first failed test."""
    env = {k: v for k, v in os.environ.items() if k != "SEG_ROOT"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=copy, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start, ""
    seconds = time.perf_counter() - start
    if done.returncode == 0:
        return "pass", seconds, ""
    return "fail", seconds, first_failure(done.stdout.decode(errors="replace"))


def first_failure(output: str) -> str:
    """The node id of the first FAILED or ERROR line of pytest's short summary."""
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split()[1]
    return "(no test named: see pytest's output)"


def plant(copy: Path, mutant: Mutant) -> str:
    """Apply the mutant to the copy; return the original text of its file."""
    path = copy / mutant.path
    text = path.read_text()
    if text.count(mutant.old) != 1:
        count = text.count(mutant.old)
        raise SystemExit(f"{mutant.name}: {mutant.path} holds its text {count} times, not once")
    path.write_text(text.replace(mutant.old, mutant.new))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=[], help="words of mutant names to run")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or any(w in m.name for w in args.only)]
    if args.list:
        for m in chosen:
            print(f"{m.name:45} {m.path:26} {' '.join(m.tests)}")
        return 0
    with tempfile.TemporaryDirectory(prefix="seg-mutation-") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(REPO, copy, ignore=IGNORE)
        files = tuple(sorted({t for m in chosen for t in m.tests if t.startswith("tests/")}))
        status, seconds, failed = pytest(copy, files, args.timeout * 2)
        print(f"unmutated: {' '.join(files)}: {status} in {seconds:.0f} s", flush=True)
        if status != "pass":
            print(f"the tests fail without any mutant ({failed}): fix them first", file=sys.stderr)
            return 1
        rows = []
        for mutant in chosen:
            original = plant(copy, mutant)
            try:
                status, seconds, test = pytest(copy, mutant.tests, args.timeout)
            finally:
                (copy / mutant.path).write_text(original)
            verdict = {"pass": "missed", "fail": "caught", "timeout": "timeout"}[status]
            rows.append((mutant, verdict))
            cells = [mutant.name, f"`{mutant.path}`", verdict, f"`{test}`" if test else "", seconds]
            print("| {} | {} | {} | {} | {:.0f} s |".format(*cells), flush=True)
    caught = sum(v == "caught" for _, v in rows)
    print(f"\nscore: {caught} of {len(rows)} mutants caught")
    for mutant, verdict in rows:
        if verdict != "caught":
            print(f"{verdict}: {mutant.name} ({mutant.path}; {' '.join(mutant.tests)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
