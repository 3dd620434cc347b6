"""Text for people and programs, knowing nothing of plans: JSON, YAML and CSV, aligned columns that
give way in a narrow terminal, and the lr bar; :mod:`lrrules.report` and :mod:`lrrules.explain`
build from these pieces."""

from __future__ import annotations

import csv
import io
import json
import math
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from .errors import printable

BAR_WIDTH, MIN_BAR_WIDTH = 12, 4  # the lr bar's characters, and the fewest it is redrawn to in a terminal
LOG_SPAN = 100.0  # bars go on a log scale when the largest lr is this many times the smallest
_EIGHTHS = " ▏▎▍▌▋▊▉"


# --- structured formats ------------------------------------------------------------------------


def to_json(data: Any) -> str:
    """``data`` as indented JSON."""
    return json.dumps(data, indent=2)


def to_yaml(data: Any) -> str:
    """``data`` as block YAML, keys in their order, short lists in flow style.

    >>> print(to_yaml({"lr": 0.1, "betas": [0.9, 0.99]}), end="")
    lr: 0.1
    betas: [0.9, 0.99]
    """
    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100))


#: A text cell starting with one of these is a formula to a spreadsheet (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as CSV with a header, lists and mappings as JSON in their cell. Text a spreadsheet would
    run as a formula (starting with ``=+-@``, a tab or CR) gets a leading ``'``, as OWASP advises
    (numbers stay numbers); a row with a CR in a cell is quoted whole (the writer quotes only for ``\\n``).

    >>> to_csv([{"name": "=cmd", "lr": -0.5}])
    "name,lr\\n'=cmd,-0.5\\n"
    """
    if not rows:
        return ""
    out = io.StringIO()
    fields = list(rows[0])
    minimal = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    quoted = csv.DictWriter(out, fieldnames=fields, lineterminator="\n", quoting=csv.QUOTE_ALL)
    minimal.writeheader()
    for row in rows:
        cells = {k: _csv_cell(v) for k, v in row.items()}
        writer = quoted if any(isinstance(v, str) and "\r" in v for v in cells.values()) else minimal
        writer.writerow(cells)
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        value = json.dumps(value)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def render(fmt: str, data: Callable[[], Any], rows: Callable[[], Sequence[dict[str, Any]]],
           table: Callable[[], str]) -> str:
    """``data()`` as JSON or YAML, ``rows()`` as CSV, or ``table()``, by ``fmt``: only the one asked
    for is built, which matters for a model of many thousand tensors.

    >>> render("csv", dict, lambda: [{"lr": 0.1}], str)
    'lr\\n0.1'
    """
    if fmt == "json":
        return to_json(data())
    if fmt == "yaml":
        return to_yaml(data()).rstrip("\n")
    if fmt == "csv":
        return to_csv(rows()).rstrip("\n")
    return table()


# --- columns -----------------------------------------------------------------------------------


@dataclass
class Column:
    """A table column and how it gives way in a narrow terminal: ``text`` is shortened (a cut cell
    ends in an ellipsis), a ``number`` never is, the ``bar`` is redrawn narrower; ``short``: the
    header's short name; ``drop``: its rank among columns left out when nothing else fits (0: never;
    -1: only when it says nothing, ``-`` in every row)."""

    header: str
    cells: list[str]
    kind: Literal["text", "number", "bar"] = "number"
    short: str = ""
    drop: int = 0
    redraw: Callable[[int], list[str]] | None = None

    @property
    def width(self) -> int:
        """The terminal columns its widest cell (or header) takes."""
        return max([_cells(self.header), *map(_cells, self.cells)])

    @property
    def floor(self) -> int:
        """How narrow shortening its cells can make it."""
        return min(self.width, max(10, _cells(self.header))) if self.kind == "text" else self.width


def fit(columns: list[Column], width: int | None, unicode: bool) -> list[str]:
    """The columns as aligned lines within ``width``, giving way in the order docs/cli.md ("In a
    terminal") gives: short headers, columns of ``-`` only, a narrower bar, ``drop`` 1 columns,
    shorter text, then higher ``drop`` ranks; room left goes back to the bar. A number is never cut."""

    def over(cols: list[Column], floors: bool = False) -> int:
        used = sum(c.floor if floors else c.width for c in cols)
        return used + 2 * (len(cols) - 1) - (width or 0)

    if width:
        if over(columns) > 0:
            for c in columns:
                c.header = c.short or c.header
        if over(columns) > 0:
            columns = [c for c in columns if not (c.drop < 0 and all(x == "-" for x in c.cells))]
        bar = next((c for c in columns if c.kind == "bar"), None)
        redraw = bar.redraw if bar is not None else None
        if bar and redraw and over(columns) > 0:
            bar.cells = redraw(MIN_BAR_WIDTH)
        for rank in sorted({c.drop for c in columns if c.drop > 0}):
            if over(columns, floors=rank > 1) <= 0:
                break
            columns = [c for c in columns if c.drop != rank]
        if bar and redraw and over(columns) < 0 and len(bar.cells) and max(map(len, bar.cells)) < BAR_WIDTH:
            # The room the later steps left goes back to the bar.
            bar.cells = redraw(min(BAR_WIDTH, max(map(len, bar.cells)) - over(columns)))
    rows = [[c.header for c in columns], *([c.cells[i] for c in columns] for i in range(len(columns[0].cells)))]
    return align(rows, width, unicode, fixed={i for i, c in enumerate(columns) if c.kind != "text"})


def log_bottom(lrs: Sequence[float]) -> float | None:
    """The smallest positive lr when the lrs span orders of magnitude (a log scale), else ``None``."""
    positive = [lr for lr in lrs if lr > 0]
    if not positive or max(positive) < LOG_SPAN * min(positive):
        return None
    return min(positive)


def lr_bar(value: float | None, top: float, unicode: bool, bottom: float | None = None, chars: int = BAR_WIDTH) -> str:
    """A bar ``value / top`` of ``chars`` characters; on a log scale from ``bottom`` (one eighth, so
    the smallest lr shows) to ``top`` (full) when ``bottom`` is given."""
    if value is None or top <= 0:
        return ""
    if bottom is not None and value > 0:
        span = math.log(top) - math.log(bottom)
        eighths = 1 + round((math.log(value) - math.log(bottom)) / span * (chars * 8 - 1))
    else:
        eighths = round(value / top * chars * 8)
    if not unicode:  # whole characters only: rounded, and at least one for any lr above zero
        return "#" * (max(1, round(eighths / 8)) if value > 0 else 0)
    return ("█" * (eighths // 8) + _EIGHTHS[eighths % 8]).rstrip() or "▏"


def fmt_num(value: float) -> str:
    return f"{value:.4g}"


def fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(fmt_value(v) for v in value) + ")"
    if isinstance(value, float):
        return fmt_num(value)
    return str(value)


def align(rows: Iterable[list[str]], width: int | None = None, unicode: bool = True,
           fixed: set[int] | None = None) -> list[str]:
    """Rows as left-aligned columns two spaces apart. Within ``width``, the widest column is
    shortened first (never below its header or 10 characters), its cut cells ending in an ellipsis;
    the ``fixed`` columns (numbers, the bar) are never cut: a cut number or bar would misstate it."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(_cells(r[i]) for r in rows) for i in range(len(rows[0]))]
    if width:
        fixed = fixed or set()
        floors = [w if i in fixed else max(10, _cells(rows[0][i])) for i, w in enumerate(widths)]
        while (over := sum(widths) + 2 * (len(widths) - 1) - width) > 0:
            i = max(range(len(widths)), key=lambda k: widths[k] - floors[k])
            if widths[i] <= floors[i]:
                break  # as narrow as it goes: the terminal wraps the rest
            widths[i] = max(floors[i], widths[i] - over)
        mark = "…" if unicode else "~"
        rows = [[c if _cells(c) <= w else _clip(c, w - 1) + mark for c, w in zip(row, widths)] for row in rows]
    return ["  ".join(cell + " " * (w - _cells(cell)) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _cells(text: str) -> int:
    """The columns a terminal gives ``text``: two for a wide (East Asian) character, none for a
    combining mark, one for any other."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _clip(text: str, width: int) -> str:
    """The longest start of ``text`` within ``width`` columns (a wide character is never split)."""
    used = 0
    for i, char in enumerate(text):
        used += _cells(char)
        if used > width:
            return text[:i]
    return text
