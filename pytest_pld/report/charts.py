"""The pieces of the self-contained HTML report (`report.html_page`): escaped HTML blocks
and SVG charts drawn as strings.

No plotting library and no script: each chart takes plain names and numbers and returns one
inline `<svg>` element that a browser draws without fetching anything. Every name goes through
`esc`, because labels, example ids and rule texts come from pull requests: a label such as
`</svg><script>` must stay text.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

CHAR_PX = 7.0  # mean glyph width of the report's 12px sans-serif, to size label columns
ROW_LABEL_CHARS = 24  # longer row labels are clipped (the full name is in a tooltip)

# The confusion matrix's colour scale. Only the largest cell(s) get exactly HEATMAP_HIGH, which
# appears nowhere else on the page: the browser test finds the heatmap by that colour.
HEATMAP_LOW = (222, 235, 247)
HEATMAP_HIGH = (8, 48, 107)
CELL_W, CELL_H = 88, 36
CELL_LABEL_CHARS = 12


def esc(value: object) -> str:
    """Text or attribute value, escaped (quotes too: values sit in double-quoted attributes)."""
    return html.escape(str(value), quote=True)


def clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


@dataclass(frozen=True)
class Series:
    """One coloured set of values in a chart, with its name for the legend."""

    name: str
    colour: str
    values: Sequence[float]


def _svg(width: float, height: float, title: str, body: list[str]) -> str:
    # no xmlns: inline SVG in HTML does not need one, and the page then names no URL at all
    return (
        f'<svg class="chart" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{esc(title)}">'
        f"<title>{esc(title)}</title>" + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, text: str, *, anchor: str = "start", cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>{esc(text)}</text>'


def _label(x: float, y: float, text: str, chars: int, *, anchor: str = "end") -> str:
    """A clipped name with its full text as a tooltip."""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"><title>{esc(text)}</title>'
        f"{esc(clip(text, chars))}</text>"
    )


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str = "#888", more: str = "") -> str:
    """A line; `more` holds further attributes written by this module, never user text."""
    at = f'x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}"'
    return f"<line {at} {more}/>" if more else f"<line {at}/>"


def _legend(x: float, y: float, series: Sequence[tuple[str, str]]) -> list[str]:
    out = []
    for name, colour in series:
        out.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{colour}"/>')
        out.append(_text(x + 14, y, name))
        x += 14 + CHAR_PX * len(name) + 18
    return out


def _label_column(names: Sequence[str]) -> float:
    longest = max((len(n) for n in names), default=4)
    return CHAR_PX * min(longest, ROW_LABEL_CHARS) + 14


# --- HTML blocks -------------------------------------------------------------------------------


def section(title: str, *parts: str) -> str:
    return f"<section><h2>{esc(title)}</h2>" + "".join(parts) + "</section>"


def table(header: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    """A table: header names are escaped here, cells must come escaped (they hold markup)."""
    numeric = numeric or set()
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{c}</td>' if j in numeric else f"<td>{c}</td>"
            for j, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def para(text: str, cls: str = "note") -> str:
    return f'<p class="{cls}">{esc(text)}</p>'


def flag(title: str, lines: list[str]) -> str:
    """A boxed warning that a reader cannot miss."""
    items = "".join(f"<li>{esc(line)}</li>" for line in lines)
    return f'<div class="flag"><strong>{esc(title)}</strong><ul>{items}</ul></div>'


def raw_text(text: str, chars: int = 200) -> str:
    """A model's raw answer, clipped, in a monospace span."""
    return f'<span class="raw">{esc(clip(text, chars))}</span>'


# --- confusion matrix --------------------------------------------------------------------------


def heat_colour(count: int, largest: int) -> str:
    if count <= 0 or largest <= 0:
        return "#ffffff"
    t = count / largest
    rgb = tuple(round(lo + (hi - lo) * t) for lo, hi in zip(HEATMAP_LOW, HEATMAP_HIGH))
    return hex_colour(rgb)  # type: ignore[arg-type]


def heatmap(
    rows: Sequence[str],
    cols: Sequence[str],
    counts: Sequence[Sequence[int]],
    *,
    title: str,
    row_axis: str = "gold",
    col_axis: str = "predicted",
) -> str:
    """A count matrix as coloured cells, each carrying its numbers as data attributes."""
    left = _label_column(rows) + 8
    top = 44.0
    width = left + CELL_W * len(cols) + 60
    height = top + CELL_H * len(rows) + 8
    largest = max((c for row in counts for c in row), default=0)
    body = [
        _text(left + CELL_W * len(cols) / 2, 14, f"{col_axis} →", anchor="middle", cls="axis"),
        _text(left + CELL_W * len(cols) + 30, top - 10, "n", anchor="middle", cls="axis"),
        _text(8, top - 10, f"{row_axis} ↓", cls="axis"),
    ]
    for j, col in enumerate(cols):
        x = left + CELL_W * (j + 0.5)
        body.append(_label(x, top - 10, col, CELL_LABEL_CHARS, anchor="middle"))
    for i, row in enumerate(rows):
        y = top + CELL_H * i
        body.append(_label(left - 8, y + CELL_H / 2 + 4, row, ROW_LABEL_CHARS))
        for j, col in enumerate(cols):
            count = counts[i][j]
            x = left + CELL_W * j
            fill = heat_colour(count, largest)
            body.append(
                f'<rect class="cell" x="{x:.1f}" y="{y:.1f}" width="{CELL_W}" height="{CELL_H}" '
                f'fill="{fill}" stroke="#d0d0d0" stroke-width="1" data-row="{esc(row)}" '
                f'data-col="{esc(col)}" data-count="{count}">'
                f"<title>{esc(row_axis)} {esc(row)}, {esc(col_axis)} {esc(col)}: {count}</title>"
                "</rect>"
            )
            dark = largest > 0 and count / largest > 0.5
            cls = "on-dark" if dark else ("diag" if row == col else "")
            if count:
                body.append(
                    _text(x + CELL_W / 2, y + CELL_H / 2 + 4, str(count), anchor="middle", cls=cls)
                )
        total = sum(counts[i])
        body.append(
            _text(left + CELL_W * len(cols) + 30, y + CELL_H / 2 + 4, str(total), anchor="middle")
        )
    return _svg(width, height, title, body)


# --- bars -------------------------------------------------------------------------------------


def bars(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    maximum: float | None = None,
    value_text: Callable[[float], str] = lambda v: f"{v:g}",
    plot_width: float = 420,
) -> str:
    """Horizontal grouped bars: one group per category, one bar per series."""
    bar_h, gap = 13.0, 10.0
    left = _label_column(categories) + 8
    top = 26.0
    group_h = bar_h * len(series) + gap
    largest = maximum or max((v for s in series for v in s.values), default=0) or 1.0
    width = left + plot_width + 60
    height = top + group_h * len(categories) + 4
    body = _legend(left, 14, [(s.name, s.colour) for s in series])
    body.append(_line(left, top - 4, left, height - 4))
    for i, category in enumerate(categories):
        y0 = top + group_h * i
        body.append(_label(left - 8, y0 + group_h / 2, category, ROW_LABEL_CHARS))
        for k, s in enumerate(series):
            value = s.values[i]
            w = max(0.0, plot_width * value / largest)
            y = y0 + bar_h * k
            body.append(
                f'<rect x="{left:.1f}" y="{y:.1f}" width="{w:.1f}" height="{bar_h - 2:.1f}" '
                f'fill="{s.colour}"><title>{esc(category)}, {esc(s.name)}: '
                f"{esc(value_text(value))}</title></rect>"
            )
            body.append(_text(left + w + 4, y + bar_h - 3, value_text(value), cls="small"))
    return _svg(width, height, title, body)


def stacked_histograms(
    panels: Sequence[tuple[str, Sequence[Sequence[int]]]],
    series: Sequence[tuple[str, str]],
    *,
    title: str,
    x_label: str,
    x_range: tuple[float, float] = (0.0, 1.0),
) -> str:
    """Small multiples side by side: per panel, one histogram whose bars stack the series
    (panel counts are [series][bin])."""
    panel_w, panel_h, pad = 220.0, 120.0, 34.0
    top = 30.0
    width = pad + (panel_w + pad) * len(panels)
    height = top + panel_h + 48
    body = _legend(pad, 14, series)
    for p, (name, counts) in enumerate(panels):
        x0 = pad + (panel_w + pad) * p
        bins = len(counts[0]) if counts else 0
        totals = [sum(c[b] for c in counts) for b in range(bins)]
        largest = max(totals, default=0) or 1
        base = top + panel_h
        bin_w = panel_w / bins if bins else panel_w
        for b in range(bins):
            y = base
            for (s_name, colour), c in zip(series, counts):
                h = panel_h * c[b] / largest
                if c[b]:
                    low = x_range[0] + (x_range[1] - x_range[0]) * b / bins
                    high = x_range[0] + (x_range[1] - x_range[0]) * (b + 1) / bins
                    body.append(
                        f'<rect class="bin" x="{x0 + bin_w * b + 1:.1f}" y="{y - h:.1f}" '
                        f'width="{bin_w - 2:.1f}" height="{h:.1f}" fill="{colour}" '
                        f'data-panel="{esc(name)}" data-series="{esc(s_name)}" data-bin="{b}" '
                        f'data-count="{c[b]}">'
                        f"<title>{esc(name)}: {esc(s_name)}, {low:.1f}-{high:.1f}: {c[b]}"
                        "</title></rect>"
                    )
                y -= h
        body.append(_line(x0, base, x0 + panel_w, base))
        body.append(_text(x0, base + 14, f"{x_range[0]:g}", cls="small"))
        body.append(_text(x0 + panel_w, base + 14, f"{x_range[1]:g}", anchor="end", cls="small"))
        body.append(_text(x0 + panel_w / 2, base + 14, x_label, anchor="middle", cls="small"))
        body.append(
            f'<text x="{x0 + panel_w / 2:.1f}" y="{base + 34:.1f}" text-anchor="middle" '
            f'class="strong"><title>{esc(name)}</title>{esc(clip(name, 30))}</text>'
        )
    return _svg(width, height, title, body)


# --- intervals --------------------------------------------------------------------------------


def intervals(
    rows: Sequence[tuple[str, float, float, float]],
    *,
    title: str,
    domain: tuple[float, float],
    reference: float | None = None,
    value_text: Callable[[float], str] = lambda v: f"{v:.3f}",
    plot_width: float = 420,
) -> str:
    """A dot and a line per row (value, low, high) on a shared axis; a reference line (e.g.
    zero for effects) when given. Rows whose interval excludes the reference are coloured by
    side: above it green, below it red."""
    row_h = 22.0
    left = _label_column([r[0] for r in rows]) + 8
    top = 10.0
    lo, hi = domain
    span = (hi - lo) or 1.0
    width = left + plot_width + 150
    height = top + row_h * len(rows) + 26

    def x(v: float) -> float:
        return left + plot_width * (min(max(v, lo), hi) - lo) / span

    body = [
        _line(x(lo), height - 22, x(hi), height - 22),
        _text(x(lo), height - 8, value_text(lo), anchor="middle", cls="small"),
        _text(x(hi), height - 8, value_text(hi), anchor="middle", cls="small"),
    ]
    if reference is not None:
        body.append(
            _line(
                x(reference), top - 4, x(reference), height - 22, "#555", 'stroke-dasharray="3 3"'
            )
        )
        body.append(
            _text(x(reference), height - 8, value_text(reference), anchor="middle", cls="small")
        )
    for i, (name, value, low, high) in enumerate(rows):
        y = top + row_h * i + row_h / 2
        colour = "#4c78a8"
        if reference is not None and low > reference:
            colour = "#2e7d32"
        elif reference is not None and high < reference:
            colour = "#c62828"
        shown = f"{value_text(value)} [{value_text(low)}, {value_text(high)}]"
        body.append(_label(left - 8, y + 4, name, ROW_LABEL_CHARS))
        body.append(_line(x(low), y, x(high), y, colour, 'stroke-width="3"'))
        body.append(
            f'<circle cx="{x(value):.1f}" cy="{y:.1f}" r="4.5" fill="{colour}">'
            f"<title>{esc(name)}: {esc(shown)}</title></circle>"
        )
        body.append(_text(left + plot_width + 10, y + 4, shown, cls="small"))
    return _svg(width, height, title, body)
