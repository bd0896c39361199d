"""`pld report --html`: the page escapes what pull requests control, names no URL, draws the
confusion matrix with the right counts, flags records it cannot compare, and renders in a real
browser (headless Chromium); the Markdown PR report gains the confusion matrix as a table."""

from __future__ import annotations

import html
import json
import struct
import subprocess
import zlib
from collections import Counter
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from helpers import Needs

from pytest_pld.ablate import Ablation, Effect, RuleAblation, load_ablation
from pytest_pld.cli import main
from pytest_pld.errors import PldError
from pytest_pld.labels import INVALID
from pytest_pld.record import ExampleResult, RunRecord, save_record
from pytest_pld.report.ablation import format_json
from pytest_pld.report.charts import CELL_H, CELL_W, HEATMAP_HIGH
from pytest_pld.report.gate_summary import Row, markdown
from pytest_pld.report.html_page import build_html, write_html

LABELS = ["pos", "neg", "mixed"]
HOSTILE = '</svg><script>alert("x")</script><img src=x onerror=alert(1)>'


def record(
    gold: Sequence[str],
    pred: Sequence[str],
    *,
    ids: Sequence[str] | None = None,
    labels: Sequence[str] = LABELS,
    raw: Sequence[str] | None = None,
    scores: Sequence[dict[str, float] | None] | None = None,
    split: str = "test",
    model: str = "scripted:m",
    version: int = 2,
) -> RunRecord:
    ids = list(ids) if ids is not None else [f"e{i}" for i in range(len(gold))]
    raw = list(raw) if raw is not None else list(pred)
    scores = list(scores) if scores is not None else [None] * len(gold)
    results = [
        ExampleResult(id=i, gold=g, pred=p, latency_ms=10.0, prompt_tokens=50, raw=r, scores=s)
        for i, g, p, r, s in zip(ids, gold, pred, raw, scores)
    ]
    return RunRecord(
        suite="s",
        split=split,
        limit=None,
        model=model,
        backend={"provider": "scripted"},
        instructions={"name": "s", "version": version, "hash": f"h{version}", "rules": 2},
        labels=list(labels),
        system_prompt_sha256="x",
        results=results,
        metrics={"accuracy": 0.5, "macro_f1": 0.5},
        path="runs/s.json",
    )


def ablation(
    *, suite: str = "s", rule_text: str = "Say pos for praise.", rule_id: str = "R1"
) -> Ablation:
    def rule(rid: str, text: str, value: float) -> RuleAblation:
        effect = Effect(value, value - 0.1, value + 0.1)
        return RuleAblation(rid, text, 12, {"macro_f1": effect, "accuracy": effect}, 20)

    return Ablation(
        suite=suite,
        split="dev",
        limit=20,
        model="scripted:m",
        instructions="s v2",
        examples=20,
        size_unit="tokens",
        full={"macro_f1": 0.6, "accuracy": 0.7},
        rules=[rule(rule_id, rule_text, 0.15), rule("R2", "Be careful.", -0.02)],
        all_rules=rule("(all rules)", "", 0.2),
    )


class Tags(HTMLParser):
    """Every start tag with its attributes, so tests can look at the page as a browser would."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def with_class(self, tag: str, cls: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and a.get("class") == cls]


GOLD = ["pos"] * 4 + ["neg"] * 3 + ["mixed"] * 3
PRED = ["pos", "pos", "pos", "neg", "neg", "neg", "pos", "mixed", INVALID, "pos"]


# --- the confusion matrix ---------------------------------------------------------------------


def test_the_heatmap_cells_carry_the_count_of_each_gold_and_predicted_pair() -> None:
    page = build_html(record(GOLD, PRED), resamples=50).html
    cells = {
        (a["data-row"], a["data-col"]): int(a["data-count"] or -1)
        for a in Tags(page).with_class("rect", "cell")
    }
    expected = Counter(zip(GOLD, PRED))
    assert cells == {(g, p): expected[(g, p)] for g in LABELS for p in [*LABELS, INVALID]}
    assert cells[("pos", "pos")] == 3 and cells[("mixed", INVALID)] == 1


def test_only_the_largest_heatmap_cell_gets_the_darkest_colour() -> None:
    page = build_html(record(GOLD, PRED), resamples=50).html
    darkest = "#{:02x}{:02x}{:02x}".format(*HEATMAP_HIGH)
    filled = [a for a in Tags(page).with_class("rect", "cell") if a["fill"] == darkest]
    assert [(a["data-row"], a["data-col"]) for a in filled] == [("pos", "pos")]
    assert page.count(darkest) == 1  # the browser test finds the heatmap by this colour


# --- what pull requests control stays text ------------------------------------------------------

ALLOWED_TAGS = {
    *("html", "head", "meta", "title", "style", "body", "header", "section", "h1", "h2", "p"),
    *("br", "code", "span", "strong", "div", "ul", "li", "table", "thead", "tbody", "tr", "th"),
    *("td", "svg", "rect", "text", "line", "circle"),
}


def hostile_page() -> str:
    labels = [HOSTILE, "neg"]
    gold = [HOSTILE, HOSTILE, "neg", "neg"]
    ids = [f"{HOSTILE}{i}" for i in range(4)]
    scores = [{HOSTILE: -0.1, "neg": -2.0}] * 4
    new = record(
        gold,
        [HOSTILE, "neg", "neg", INVALID],
        ids=ids,
        labels=labels,
        raw=[HOSTILE] * 4,
        scores=scores,
    )
    old = record(gold, [HOSTILE, HOSTILE, "neg", "neg"], ids=ids, labels=labels, raw=[HOSTILE] * 4)
    old.path = HOSTILE
    return build_html(
        new, compare=old, ablation=ablation(rule_text=HOSTILE, rule_id=HOSTILE), resamples=50
    ).html


def test_hostile_labels_ids_raw_answers_and_rule_texts_stay_text() -> None:
    page = hostile_page()
    tags = Tags(page).tags
    assert {t for t, _ in tags} <= ALLOWED_TAGS
    assert not [name for _, attrs in tags for name in attrs if name.startswith("on")]
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert page.count("<svg") == page.count("</svg>")
    # the hostile text is shown, escaped, not dropped
    assert "&lt;/svg&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_the_page_names_no_url_and_loads_nothing() -> None:
    scores = [{"pos": -0.2, "neg": -1.5, "mixed": -3.0}] * len(GOLD)
    new = record(GOLD, PRED, scores=scores)
    old = record(GOLD, GOLD)
    page = build_html(new, compare=old, ablation=ablation(), resamples=50).html
    for needle in ("http://", "https://", "<script", "src=", "href=", "url(", "@import", "<link"):
        assert needle not in page.lower(), needle


# --- compared records ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "other, reason",
    [
        pytest.param(record(GOLD, GOLD, split="dev"), "split", id="another-split"),
        pytest.param(record(GOLD, GOLD, model="scripted:other"), "model", id="another-model"),
        pytest.param(
            record(GOLD, GOLD, ids=[f"x{i}" for i in range(len(GOLD))]),
            "example ids differ",
            id="other-examples",
        ),
        pytest.param(record(["neg", *GOLD[1:]], GOLD), "gold labels differ", id="relabelled"),
    ],
)
def test_a_compared_record_that_cannot_be_paired_is_flagged_without_flips(
    other: RunRecord, reason: str
) -> None:
    report = build_html(record(GOLD, PRED), compare=other, resamples=50)
    assert 'class="flag"' in report.html and "Not comparable" in report.html
    assert reason in report.html
    assert "raw answer (this record)" not in report.html  # no flips table
    assert len(report.notes) == 1 and reason in report.notes[0]


def test_a_comparable_record_lists_the_examples_that_flipped_each_way() -> None:
    old_pred = ["neg", *PRED[1:4], "pos", *PRED[5:]]  # e0 was wrong, e4 was right (neg->pos)
    new_pred = ["pos", *PRED[1:4], "pos", *PRED[5:]]
    old_pred[4], new_pred[4] = "neg", "mixed"
    page = build_html(record(GOLD, new_pred), compare=record(GOLD, old_pred), resamples=50)
    assert page.notes == []
    assert "1 went from right to wrong, 1 from wrong to right" in page.html
    assert "<td><code>e4</code></td><td>neg</td><td>neg</td><td>mixed</td>" in page.html
    assert "<td><code>e0</code></td><td>pos</td><td>neg</td><td>pos</td>" in page.html
    assert "right → wrong" in page.html and "wrong → right" in page.html


def test_intervals_resample_the_records_clusters_and_rates_get_wilson() -> None:
    from pytest_pld import stats

    clusters = [f"doc{i // 3}" for i in range(len(GOLD))]
    clustered = record(GOLD, PRED)
    for result, cluster in zip(clustered.results, clusters):
        result.cluster = cluster
    clustered.cluster_key = "doc"
    page = build_html(clustered, compare=record(GOLD, PRED), resamples=50).html
    n_clusters = len(set(clusters))
    assert f"resampled as {n_clusters} clusters by doc" in page
    wilson = stats.rate_interval([g == p for g, p in zip(GOLD, PRED)], clusters=clusters)
    assert f"{wilson.low:.3f} .. {wilson.high:.3f}" in page
    assert "wilson, design effect" in page
    # the comparison pairs by id and takes the clusters this record carries
    assert f"95% paired bootstrap intervals over {n_clusters} clusters by doc" in page
    assert "McNemar exact test of correctness: 0 right -&gt; wrong, 0 wrong -&gt; right" in page


# --- scores, ablation ---------------------------------------------------------------------------


def test_a_record_without_scores_says_so_instead_of_drawing_empty_charts() -> None:
    page = build_html(record(GOLD, PRED), resamples=50).html
    assert "This record has no per-label scores" in page
    assert not Tags(page).with_class("rect", "bin")


def test_scores_are_drawn_per_label_as_probabilities_over_the_labels() -> None:
    # log-probabilities of pos, neg, mixed: -0.05 -> p(pos) ~ 0.93 after renormalising
    scores = [{"pos": -0.05, "neg": -3.5, "mixed": -4.0}] * len(GOLD)
    page = build_html(record(GOLD, PRED, scores=scores), resamples=50).html
    bins = Tags(page).with_class("rect", "bin")
    assert sum(int(b["data-count"] or 0) for b in bins) == len(LABELS) * len(GOLD)
    pos_high = [b for b in bins if b["data-panel"] == "pos" and b["data-bin"] == "9"]
    assert [(b["data-series"], b["data-count"]) for b in pos_high] == [
        ("gold is this label", "4"),
        ("gold is another label", "6"),
    ]


def test_per_rule_effects_are_listed_with_their_intervals() -> None:
    page = build_html(record(GOLD, PRED), ablation=ablation(), resamples=50)
    assert "+0.150 [+0.050, +0.250]" in page.html and "Say pos for praise." in page.html
    assert page.notes == [] and 'class="flag"' not in page.html


def test_an_ablation_of_another_suite_is_flagged() -> None:
    page = build_html(record(GOLD, PRED), ablation=ablation(suite="other"), resamples=50)
    assert 'class="flag"' in page.html
    assert html.escape("suite: the ablation's 'other', the record's 's'") in page.html
    assert len(page.notes) == 1


def test_an_ablation_file_reads_back_what_pld_ablate_wrote(tmp_path: Path) -> None:
    path = tmp_path / "ablation.json"
    path.write_text(format_json(ablation()), encoding="utf-8")
    assert load_ablation(path) == ablation()


@pytest.mark.parametrize(
    "content, message",
    [
        pytest.param(None, "not found", id="missing"),
        pytest.param("{", "malformed JSON", id="broken-json"),
        pytest.param(
            json.dumps(record(GOLD, PRED).to_json()),
            "a run record, not an ablation",
            id="a-run-record",
        ),
        pytest.param("[1, 2]", "not an ablation", id="a-list"),
        pytest.param(
            format_json(ablation()).replace('"macro_f1": {', '"f1": {'),
            "wrong shape",
            id="no-effect",
        ),
    ],
)
def test_a_file_that_is_not_an_ablation_is_refused_with_a_hint(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "ablation.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(PldError, match=message) as caught:
        load_ablation(path)
    assert caught.value.path == str(path)
    assert caught.value.hint and "pld ablate" in caught.value.hint


def test_a_record_without_results_is_refused() -> None:
    with pytest.raises(PldError, match="no results") as caught:
        build_html(record([], []))
    assert caught.value.path == "runs/s.json"


# --- the command ---------------------------------------------------------------------------------


def test_pld_report_writes_one_page_and_says_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec, other = tmp_path / "new.json", tmp_path / "old.json"
    save_record(record(GOLD, PRED), rec)
    save_record(record(GOLD, GOLD, split="dev"), other)
    out = tmp_path / "report.html"
    code = main(
        ["report", str(rec), "--compare", str(other), "--html", str(out), "--resamples", "50"]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert f"wrote {out}" in captured.out
    assert "not comparable" in captured.err  # the flagged comparison is said on the terminal too
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.json", "old.json", "report.html"]


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    rec = tmp_path / "rec.json"
    save_record(record(GOLD, PRED), rec)
    (tmp_path / "folder.json").mkdir()
    return {
        "missing-record": ([str(tmp_path / "nope.json")], "run record not found"),
        "record-is-a-folder": (
            [str(tmp_path / "folder.json")],
            "is a directory, not the run record",
        ),
        "ablation-is-a-record": (
            [str(rec), "--ablation", str(rec)],
            "a run record, not an ablation",
        ),
        "no-output-folder": ([str(rec)], "does not exist"),
    }


@pytest.mark.parametrize(
    "case", ["missing-record", "record-is-a-folder", "ablation-is-a-record", "no-output-folder"]
)
def test_pld_report_refuses_bad_input_naming_the_file_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    args, message = _bad_inputs(tmp_path)[case]
    out = tmp_path / ("missing/report.html" if case == "no-output-folder" else "report.html")
    code = main(["report", *args, "--html", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and str(tmp_path) in err
    assert not out.exists()


# --- the Markdown PR report ----------------------------------------------------------------------


def test_the_markdown_report_shows_the_confusion_matrix_next_to_per_class_scores(
    tmp_path: Path,
) -> None:
    path = save_record(record(GOLD, PRED), tmp_path / "run.json")
    row = Row(
        suite="s",
        gate="accuracy>=0.5",
        outcome="passed",
        metric="accuracy",
        value=0.6,
        model="scripted:m",
        record=str(path),
    )
    text = markdown([row], tmp_path)
    assert "Per-class scores:" in text
    table = text[text.index("Confusion matrix") :].splitlines()[2:6]
    assert table == [
        "| gold \\ predicted | pos | neg | mixed | invalid |",
        "|---|--:|--:|--:|--:|",
        "| pos | **3** | 1 | 0 | 0 |",
        "| neg | 1 | **2** | 0 | 0 |",
    ]
    assert "| mixed | 1 | 0 | **1** | 1 |" in text


def test_markdown_labels_cannot_break_the_table(tmp_path: Path) -> None:
    rec = record(["a|b", "<b>x</b>"], ["a|b", "<b>x</b>"], labels=["a|b", "<b>x</b>"])
    path = save_record(rec, tmp_path / "run.json")
    row = Row(
        suite="s", gate="accuracy>=0.5", outcome="passed", model="scripted:m", record=str(path)
    )
    text = markdown([row], tmp_path)
    assert "| a\\|b | **1** | 0 | 0 |" in text and "&lt;b&gt;x&lt;/b&gt;" in text
    assert "<b>" not in text


# --- a real browser ------------------------------------------------------------------------------


def read_png_rgb(path: Path, columns: int) -> np.ndarray:
    """The left `columns` pixels of every row of an 8-bit RGB(A) PNG, as (height, columns, 3).

    The standard library has zlib but no PNG reader; PNG rows depend only on the row above and
    on pixels to their left, so decoding a left strip is exact and saves the pure-Python loop
    (Paeth rows) most of its work."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IHDR":
            header = data[pos + 8 : pos + 8 + length]
        elif kind == b"IDAT":
            idat.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, "an unexpected PNG format"
    bpp = 3 if colour == 2 else 4
    rows = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, width * bpp + 1)
    n = min(columns, width) * bpp
    out = np.zeros((height, n), np.uint8)
    prev = np.zeros(n, np.uint8)
    for y in range(height):
        kind, line = int(rows[y, 0]), rows[y, 1 : n + 1]
        if kind == 0:
            cur = line
        elif kind == 1:
            cur = (
                (line.reshape(-1, bpp).cumsum(axis=0, dtype=np.uint64) % 256)
                .astype(np.uint8)
                .ravel()
            )
        elif kind == 2:
            cur = line + prev
        else:
            cur = np.frombuffer(
                _average_or_paeth(kind, line.tobytes(), prev.tobytes(), bpp), np.uint8
            )
        out[y] = cur
        prev = out[y]
    return out.reshape(height, -1, bpp)[:, :, :3]


def _average_or_paeth(kind: int, line: bytes, prev: bytes, bpp: int) -> bytearray:
    cur = bytearray(line)
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        if kind == 3:
            cur[i] = (cur[i] + ((a + b) >> 1)) & 255
            continue
        c = prev[i - bpp] if i >= bpp else 0
        pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
        cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    return cur


def test_the_report_renders_in_headless_chromium_with_the_heatmap(
    tmp_path: Path, needs: Needs
) -> None:
    chromium = needs.chromium()
    scores = [{"pos": -0.3, "neg": -1.2, "mixed": -2.5}] * len(GOLD)
    page = build_html(
        record(GOLD, PRED, scores=scores),
        compare=record(GOLD, GOLD),
        ablation=ablation(),
        resamples=50,
    )
    html_path = write_html(page, tmp_path / "report.html")
    png = tmp_path / "shot.png"
    command = [
        chromium,
        *("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"),
        *("--disable-background-networking", "--disable-component-update", "--disable-sync"),
        *("--hide-scrollbars", "--force-device-scale-factor=1", "--force-color-profile=srgb"),
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={png}",
        "--window-size=1200,2000",
        html_path.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert png.exists(), f"no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    image = read_png_rgb(png, columns=600)  # the heatmap sits on the left of the page
    not_white = np.any(image < 245, axis=2)
    assert not_white.mean() > 0.02, "the screenshot is (almost) blank"
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50, "too few colours for charts and text"
    darkest = np.all(image == np.array(HEATMAP_HIGH, np.uint8), axis=2)
    ys, xs = np.nonzero(darkest)
    assert len(xs) > 0.6 * CELL_W * CELL_H, f"the heatmap's largest cell is missing ({len(xs)} px)"
    # one solid cell of the heatmap's size, nowhere else (its count is drawn on it in white)
    assert CELL_W - 3 <= xs.max() - xs.min() + 1 <= CELL_W
    assert CELL_H - 3 <= ys.max() - ys.min() + 1 <= CELL_H
