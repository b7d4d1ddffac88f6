"""mkdocs hook: a marker in a page becomes the tables of a benchmark's results file.

    <!-- results: cv -->                               every table of benchmarks/results/cv.json
    <!-- results: peers | table: Networks -->          one table, by its title
    <!-- results: cv | omit: name, seed, experiment --> without some columns

Each table is drawn by ``benchmarks.common.markdown_table``, the function the benchmarks print
their reports with, under its title and a line naming the machine the numbers were measured on
(cpu, cores, threads, load, date, torch) and the file they came from. A name without a results
file, an unknown table title or column, or an unknown option fails the build, naming what exists.
"""

import json
import re
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
MARKER = re.compile(r"<!--\s*results:\s*(.*?)\s*-->")
OPTIONS = ("table", "omit")


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """benchmarks.common's table function, imported on first use (it imports torch)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from benchmarks.common import markdown_table as table

    return table(rows, columns)


def parse(marker: str) -> tuple[str, dict[str, list[str]]]:
    """`name | key: a, b` -> (name, {key: [a, b]})."""
    name, *parts = [part.strip() for part in marker.split("|")]
    options = {}
    for part in parts:
        key, _, value = part.partition(":")
        if key.strip() not in OPTIONS:
            raise ValueError(f"unknown option {key.strip()!r}; options: {', '.join(OPTIONS)}")
        options[key.strip()] = [v.strip() for v in value.split(",") if v.strip()]
    return name, options


def machine_line(machine: dict, source: str) -> str:
    """Where the numbers were measured, in one italic line."""
    parts = [machine.get("cpu", "unknown CPU")]
    if machine.get("gpu"):
        parts.append(machine["gpu"])
    cores, threads = machine.get("cores"), machine.get("torch_threads")
    parts += [
        f"{cores} cores" if cores and "cores" not in parts[0] else "",
        f"{threads} torch thread{'s' * (threads != 1)}" if threads else "",
        f"load {machine['load_avg']}" if "load_avg" in machine else "",
        str(machine.get("date", "")).replace("T", " "),
        f"torch {machine['torch']}" if "torch" in machine else "",
        machine.get("note", ""),
    ]
    return "_Measured on " + "; ".join(p for p in parts if p) + f" (`{source}`)._"


def columns_of(rows: list[dict], omit: list[str]) -> list[str]:
    """Every key of the rows in first-seen order, less `omit` (each of which must exist)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    unknown = [c for c in omit if c not in columns]
    if unknown:
        raise ValueError(f"no column {', '.join(unknown)}; columns: {', '.join(columns)}")
    return [c for c in columns if c not in omit]


def render(marker: str, results: Path = RESULTS) -> str:
    """The Markdown that replaces `<!-- results: {marker} -->`."""
    name, options = parse(marker)
    path = results / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in results.glob("*.json"))
        raise ValueError(
            f"no results named {name!r} ({path} is missing); known: {', '.join(known)}"
        )
    data = json.loads(path.read_text())
    tables = data["tables"]
    wanted = options.get("table", list(tables))
    missing = [t for t in wanted if t not in tables]
    if missing:
        raise ValueError(f"{name}.json has no table {missing[0]!r}; tables: {', '.join(tables)}")
    source = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    blocks = [machine_line(data.get("machine", {}), str(source))]
    for title in wanted:
        rows = tables[title]
        table = markdown_table(rows, columns_of(rows, options.get("omit", [])))
        blocks.append(table if len(wanted) == 1 else f"**{title}**\n\n{table}")
    return "\n\n".join(blocks)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace every results marker of the page; a bad one stops the build, naming the page."""

    def replace(match: re.Match) -> str:
        try:
            return render(match.group(1))
        except ValueError as error:
            raise PluginError(f"{page.file.src_uri}: {match.group(0)}: {error}") from error

    return MARKER.sub(replace, markdown)
