"""report.html and per_image.csv: sections, no network, the numbers of metrics.json, worst-k."""

import csv
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import write_voc_tree
from PIL import Image
from test_evaluate import eval_config, write_checkpoint

from benchmarks.report_screenshot import check_not_blank, screenshot
from evaluate import evaluate
from seg.report.draw import WRONG_COLOUR, failure_panel
from seg.report.html import WorstImages
from seg.report.tables import percent

SECTIONS = {"comparison", "per-class", "confusion", "curve", "per-image", "worst"}


class Page(HTMLParser):
    """Sections, table cells by section, image sources, figure captions and every URL."""

    def __init__(self) -> None:
        super().__init__()
        self.section, self.sections, self.tables = None, [], {}
        self.images, self.captions, self.urls, self.cell = [], [], [], None
        self.tags = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        self.urls += [v for k, v in attrs.items() if k in ("src", "href", "action") and v]
        if tag == "section":
            self.section = attrs["id"]
            self.sections.append(self.section)
            self.tables[self.section] = []
        elif tag == "tr":
            self.tables[self.section].append([])
        elif tag in ("td", "th", "figcaption"):
            self.cell = ""
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[self.section][-1].append(self.cell.strip())
        elif tag == "figcaption":
            self.captions.append(self.cell.strip())
        if tag in ("td", "th", "figcaption"):
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Two checkpoints of one run (random scores: varied predictions) on six labelled images."""
    tmp = tmp_path_factory.mktemp("report")
    root = write_voc_tree(tmp / "VOC2012", {"train": 1, "val": 6}, num_classes=5)
    for step, seed in ((10, 0), (20, 1)):
        path = tmp / f"run/checkpoints/periodic/epoch{step // 10}-step{step}.ckpt"
        write_checkpoint(path, num_classes=5, step=step, seed=seed)
    overrides = [
        "save_predictions=true",
        "report.worst_k=3",
        "data.class_names=[background,aeroplane,bicycle,bird,boat]",
    ]
    out = tmp / "out"
    result = evaluate(eval_config(tmp / "run", root, out, *overrides))
    page = Page()
    page.feed((out / "report.html").read_text())
    return root, out, result, page


def test_the_page_has_every_section_and_needs_no_network(evaluated):
    _, out, result, page = evaluated
    assert set(page.sections) == SECTIONS and result["report"] == str(out / "report.html")
    assert page.images and all(src.startswith("data:image/") for src in page.images)
    assert page.urls == page.images  # no link, stylesheet or script from anywhere else
    assert not {"link", "iframe"} & page.tags
    text = (out / "report.html").read_text()
    text = re.sub(r"data:image/(png|jpeg);base64,[A-Za-z0-9+/=]+", "", text)
    assert not re.search(r"https?:|//|url\(|@import", text)
    for src in page.images:  # every embedded picture decodes
        assert len(src) > 1000


def test_the_page_shows_the_numbers_of_metrics_json(evaluated):
    _, out, _, page = evaluated
    saved = json.loads((out / "metrics.json").read_text())["results"]
    header, *rows = page.tables["comparison"]
    assert header[-4:] == ["pixel acc.", "mean acc.", "mean IU", "f.w. IU"]
    assert len(rows) == len(saved) == 2
    for row, r in zip(rows, saved, strict=True):
        assert row[0] == r["checkpoint"] and row[4] == str(r["step"])
        expected = [percent(r[k]) for k in ("pixel_acc", "mean_acc", "mIoU", "fwIoU")]
        assert row[5:] == expected
    assert len({row[7] for row in rows}) == 2  # the two checkpoints differ
    header, *rows = page.tables["per-class"]
    assert header == ["class"] + [r["checkpoint"] for r in saved]
    for row in rows:
        assert row[1:] == [percent(r["iou"][row[0]]) for r in saved]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def hand_scores(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """Pixel accuracy and the mean IoU of the classes in the truth or the prediction."""
    keep = truth != 255
    t, p = truth[keep], pred[keep]
    ious = [((t == c) & (p == c)).sum() / ((t == c) | (p == c)).sum() for c in np.union1d(t, p)]
    return float((t == p).mean()), float(np.mean(ious))


def test_per_image_miou_equals_the_saved_predictions_scored_by_hand(evaluated):
    root, out, _, _ = evaluated
    rows = read_csv(out / "per_image.csv")
    assert list(rows[0])[:5] == ["checkpoint", "id", "pixel_acc", "mIoU", "worst_class"]
    assert list(rows[0])[5:] == ["background", "aeroplane", "bicycle", "bird", "boat"]
    assert len(rows) == 12  # six images, two checkpoints
    checked = 0
    for row in rows[:3] + rows[-3:]:
        label = row["checkpoint"].removesuffix(".ckpt").replace("/", "__")
        found = list((out / "predictions" / label).rglob(f"{row['id']}.png"))
        pred = np.array(Image.open(found[0]))
        truth = np.array(Image.open(root / "SegmentationClass" / f"{row['id']}.png"))
        pixel_acc, miou = hand_scores(truth, pred)
        assert float(row["pixel_acc"]) == pytest.approx(pixel_acc)
        assert float(row["mIoU"]) == pytest.approx(miou)
        checked += 1
    assert checked == 6 and len({r["mIoU"] for r in rows}) > 3


def test_the_worst_images_are_the_lowest_miou_of_the_best_checkpoint_in_order(evaluated):
    _, out, result, page = evaluated
    best = max(result["results"], key=lambda r: r["mIoU"])["checkpoint"]
    rows = [r for r in read_csv(out / "per_image.csv") if r["checkpoint"] == best]
    expected = sorted(rows, key=lambda r: float(r["mIoU"]))[:3]
    shown = [caption.split(":")[0] for caption in page.captions]
    assert shown == [r["id"] for r in expected]
    table_ids = [row[0] for row in page.tables["per-image"][1:]]
    assert sorted(table_ids) == sorted(r["id"] for r in rows)


def test_worst_images_keep_the_k_lowest_and_the_first_seen_on_ties():
    worst = WorstImages(2)
    tile = np.zeros((4, 4, 3), np.uint8)
    for image_id, miou in (("a", 0.5), ("b", 0.2), ("c", 0.9), ("d", 0.2), ("e", 0.1)):
        worst.add(image_id, miou, tile)
    assert [(w["id"], w["mIoU"]) for w in worst.items()] == [("e", 0.1), ("b", 0.2)]
    assert not worst.wants(0.2) and worst.wants(0.15) and not worst.wants(None)


def test_a_failure_panel_marks_errors_and_shows_their_legend():
    truth = np.zeros((30, 40), np.uint8)
    truth[:, 20:] = 1
    pred = np.zeros((30, 40), np.uint8)
    image = np.full((30, 40, 3), 90, np.uint8)
    palette = [[10, 20, 30], [200, 100, 0]]
    picture = failure_panel(image, truth, pred, ["road", "car"], palette)
    errors = picture[:30, 3 * 44 :]  # the fourth panel
    assert np.all(errors[:, 20:] == WRONG_COLOUR) and not np.any(np.all(errors[:, :20] == 230, 2))
    legend = picture[30:]
    for colour in (*palette, WRONG_COLOUR):
        assert np.all(legend == colour, axis=2).sum() >= 14 * 14


def test_report_worst_k_zero_leaves_the_panels_out(tmp_path):
    root = write_voc_tree(tmp_path / "VOC2012", {"train": 1, "val": 2}, num_classes=3)
    ckpt = write_checkpoint(tmp_path / "a.ckpt", num_classes=3, seed=0)
    names = "data.class_names=[background,aeroplane,bicycle]"
    evaluate(eval_config(ckpt, root, tmp_path / "out", "report.worst_k=0", names))
    page = Page()
    page.feed((tmp_path / "out" / "report.html").read_text())
    assert not page.captions and "curve" not in page.sections


@pytest.mark.slow
def test_headless_chromium_renders_the_report(evaluated, tmp_path):
    if shutil.which("chromium") is None:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    _, out, _, _ = evaluated
    picture = screenshot(out / "report.html", tmp_path / "shot.png", (1000, 1400))
    check_not_blank(picture)  # raises SystemExit on a blank page
    assert picture.shape == (1400, 1000, 3)
    with pytest.raises(SystemExit, match="blank"):
        check_not_blank(np.full((1400, 1000, 3), 255, np.uint8))
