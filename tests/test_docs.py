"""The docs site: results markers become tables, the concepts examples run, the build passes."""

import doctest
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import skip_or_fail

from benchmarks.common import markdown_table

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def require_mkdocs() -> None:
    if importlib.util.find_spec("mkdocs") is None:
        skip_or_fail("mkdocs is not installed; install it with `pip install -e '.[docs]'`")


def load_hook():
    require_mkdocs()
    spec = importlib.util.spec_from_file_location("results_hook", DOCS / "hooks" / "results.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    return hook


def write_results(folder: Path) -> list[dict]:
    rows = [{"model": "fcn8s/vgg16", "img/s": 1.234, "note": "a"}, {"model": "unet", "img/s": 9.0}]
    machine = {"cpu": "Test CPU", "cores": 2, "torch_threads": 1, "date": "2026-01-02T03:04:05"}
    data = {"benchmark": "demo", "machine": machine | {"torch": "2.x"}, "settings": {}}
    data["tables"] = {"Speed": rows, "Other": [{"a": 1}]}
    (folder / "demo.json").write_text(json.dumps(data))
    return rows


def test_marker_becomes_the_table_of_its_json(tmp_path):
    hook = load_hook()
    rows = write_results(tmp_path)
    text = hook.render("demo | table: Speed", tmp_path)
    assert text.startswith("_Measured on Test CPU; 2 cores; 1 torch thread; 2026-01-02 03:04:05;")
    assert "torch 2.x" in text and "demo.json" in text
    assert text.endswith(markdown_table(rows, ["model", "img/s", "note"]))
    assert "| fcn8s/vgg16 | 1.23 | a |" in text
    assert hook.render("demo | table: Speed | omit: note", tmp_path).endswith(
        markdown_table(rows, ["model", "img/s"])
    )
    both = hook.render("demo", tmp_path)
    assert "**Speed**" in both and "**Other**" in both


@pytest.mark.parametrize(
    ("marker", "says"),
    [
        ("nosuch", "no results named 'nosuch'"),
        ("demo | table: Nope", "tables: Speed, Other"),
        ("demo | omit: colour", "columns: model, img/s, note"),
        ("demo | sort: model", "options: table, omit"),
    ],
)
def test_a_bad_marker_names_what_exists(tmp_path, marker, says):
    hook = load_hook()
    write_results(tmp_path)
    with pytest.raises(ValueError, match=re.escape(says)) as error:
        hook.render(marker, tmp_path)
    if marker == "nosuch":
        assert "known: demo" in str(error.value)


def mkdocs_command() -> list[str]:
    require_mkdocs()
    return [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet"]


def test_unknown_results_name_fails_the_build(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Page\n\n<!-- results: no_such_benchmark -->\n")
    config = f"site_name: t\ndocs_dir: docs\nhooks: ['{DOCS / 'hooks' / 'results.py'}']\n"
    (tmp_path / "mkdocs.yml").write_text(config)
    done = subprocess.run(
        [*mkdocs_command(), "-d", str(tmp_path / "site")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "index.md: <!-- results: no_such_benchmark -->: no results named" in done.stderr
    assert "known: " in done.stderr and "cv" in done.stderr


def test_the_site_builds_strictly(tmp_path):
    done = subprocess.run(
        [*mkdocs_command(), "-d", str(tmp_path / "site")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    concepts = (tmp_path / "site" / "concepts" / "index.html").read_text()
    assert "bilinear_kernel" in concepts
    recipes = (tmp_path / "site" / "recipes" / "index.html").read_text()
    assert "results:" not in recipes and "resnet18@42" in recipes  # the cv marker was replaced


def test_concepts_examples_run():
    """Every >>> line of docs/concepts.md runs, and prints what the page says."""
    text = (DOCS / "concepts.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 6
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    test = parser.get_doctest("\n".join(blocks), {}, "concepts.md", str(DOCS / "concepts.md"), 0)
    assert len(test.examples) > 20
    result = runner.run(test)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed (see above)"


README_KINDS = {  # README's row label -> benchmarks/plan_kinds.py kind
    "streets": "streets", "grey": "grey", "binary": "binary", "4-band 16-bit": "multiband16",
    "large tiles": "tiles", "very few images": "voc", "few images": "few",
}  # fmt: skip


def test_readme_plan_table_is_the_benchmarks_results():
    """Each cell: the arm's mIoU at seed 42, then at seeds 7 and 43 where there are."""
    rows = json.loads((REPO / "benchmarks" / "results" / "plan_kinds.json").read_text())["tables"]
    (rows,) = rows.values()
    score = {(r["kind"], r["arm"], r["seed"]): r["mIoU"] for r in rows if "mIoU" in r}
    readme = (REPO / "README.md").read_text()
    for label, kind in README_KINDS.items():
        cells = [
            " / ".join(f"{score[kind, arm, s]:.1f}" for s in (42, 7, 43) if (kind, arm, s) in score)
            for arm in ("plan", "defaults", "paper")
        ]
        line = next(x for x in readme.splitlines() if x.startswith(f"| {label} "))
        assert line.endswith(f"| {' | '.join(cells)} |".replace("|  |", "| |")), (line, cells)
