"""The house's boundaries: import-linter's contracts (pyproject.toml) and the entry points."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENTRY_POINTS = ("train.py", "evaluate.py", "predict.py", "export.py")


def test_the_import_contracts_hold():
    linter = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(linter).exists():
        pytest.fail("lint-imports is missing: install the dev extra (pip install -e '.[dev]')")
    done = subprocess.run([linter, "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def imported_modules(path: Path) -> set[str]:
    """Every module an entry point imports, at any depth of its code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_an_entry_point_imports_no_other_entry_point(entry):
    others = {Path(e).stem for e in ENTRY_POINTS} - {Path(entry).stem}
    used = {name.split(".")[0] for name in imported_modules(REPO / entry)}
    assert not used & others, f"{entry} imports {sorted(used & others)}: move it into seg/"


def test_the_linter_catches_an_upward_import(tmp_path):
    """The contract is live: models importing the data package breaks it."""
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "seg", copy / "seg", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy)
    layers = copy / "seg" / "models" / "layers.py"
    layers.write_text("import seg.data  # noqa: F401\n" + layers.read_text())
    linter = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    env = {"PYTHONPATH": str(copy), "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run([linter, "--no-cache"], cwd=copy, capture_output=True, text=True, env=env)
    assert done.returncode != 0
    assert "seg.models.layers -> seg.data" in done.stdout
