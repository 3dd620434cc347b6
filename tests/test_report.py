"""The tables of report.py in a narrow terminal: they fit, give way in the documented order, never
cut a number; and the optimizer each group goes to agrees between the table, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json

import pytest

import lrrules
from tests.conftest import ROOT
from lrrules.report import plan_rows, plan_table
from lrrules.tables import to_csv
from lrrules.sources import open_model

#: (rule file, model): files of every kind (stage decay, per-tensor decay, timm layer decay, frozen,
#: several optimizers) on models of several families.
CASES = [
    ("examples/resnet18-discriminative.yaml", "resnet18"),
    ("examples/resnet18-layerwise-per-tensor.yaml", "resnet18"),
    ("examples/resnet18-frozen-backbone.yaml", "resnet18"),
    ("examples/vit-timm-layer-decay.yaml", "vit_tiny_patch16_224"),
    ("examples/bert-layerwise-decay.yaml", "hf:examples/integrations/tiny-bert"),
    ("examples/muon-adamw.yaml", "hf:examples/integrations/tiny-llama"),
    ("examples/no-decay-bias-norm.json", "convnext_atto"),
]
WIDTHS = [80, 100, 72]


@pytest.fixture(scope="module")
def plans() -> dict[tuple[str, str], lrrules.Plan]:
    out = {}
    with pytest.MonkeyPatch.context() as patch:  # module-scoped: before the per-test move to the root
        patch.chdir(ROOT)
        for rules, spec in CASES:
            model = open_model(spec)
            out[rules, spec] = lrrules.resolve(lrrules.load(rules), model.module)
    return out


def _num(value: float) -> str:
    return f"{value:.4g}"


def _table(text: str, rows: int) -> list[str]:
    return text.splitlines()[2:3 + rows]  # under the title and the base line: the header and the rows


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(("rules", "spec"), CASES, ids=[f"{r.split('/')[-1]}-{s.split('/')[-1]}" for r, s in CASES])
def test_the_group_table_fits_and_never_cuts_a_number(rules: str, spec: str, width: int,
                                                      plans: dict[tuple[str, str], lrrules.Plan]) -> None:
    plan = plans[rules, spec]
    text = plan_table(plan, f"{rules} on {spec}", width=width)
    table = _table(text, len(plan.groups))
    assert all(len(line) <= width for line in table), "\n".join(table)
    header = table[0].split()
    for group, line in zip(plan.groups, table[1:]):
        cells = line.split()
        assert cells[0] == str(group.index)
        assert _num(group.lr) in cells and _num(group.weight_decay) in cells and str(len(group.params)) in cells
        if "elements" in header:
            assert f"{group.numel:,}" in cells
        if "scale" in header or "lr_scale" in header:
            assert _num(group.lr_scale) in cells
    # The documented order: lr_scale goes before elements, and only when the table needs it.
    if "elements" not in header:
        assert "scale" not in header and "lr_scale" not in header
    wide = _table(plan_table(plan, f"{rules} on {spec}"), len(plan.groups))
    if max(map(len, wide)) <= width:
        assert table == wide, "a table that fits is left as it is"


@pytest.mark.parametrize(("rules", "spec"), CASES[:4], ids=[r.split("/")[-1] for r, _ in CASES[:4]])
def test_the_parameter_table_fits_80_columns_with_every_number(rules: str, spec: str,
                                                              plans: dict[tuple[str, str], lrrules.Plan]) -> None:
    plan = plans[rules, spec]
    text = plan_table(plan, "", per_param=True, width=80).splitlines()
    table = text[1:2 + len(plan.params)]  # no title: the base line, then the header and a row per tensor
    assert all(len(line) <= 80 for line in table)
    for a, line in zip(plan.params, table[1:]):
        cells = line.split()
        assert (_num(a.lr) if a.lr is not None else a.status) in cells
        if a.weight_decay is not None:
            assert _num(a.weight_decay) == cells[-1] or _num(a.weight_decay) in cells


def test_the_bar_narrows_after_the_short_headers_and_regrows_into_the_room_left(
        plans: dict[tuple[str, str], lrrules.Plan]) -> None:
    plan = plans["examples/resnet18-discriminative.yaml", "resnet18"]
    top = max(range(len(plan.groups)), key=lambda i: plan.groups[i].lr)
    for width in range(60, 110):
        table = _table(plan_table(plan, "t", width=width), len(plan.groups))
        bar = table[1 + top].split()[2]  # the largest lr's bar is full: its length is the bar's width
        assert 4 <= len(bar) <= 12
        header = table[0].split()
        if len(bar) < 12:  # narrowed: the lossless steps came first
            assert "wd" in header and "weight_decay" not in header
        if "scale" not in header:
            assert len(bar) < 12 or max(map(len, table)) <= width


def test_the_optimizer_each_group_goes_to_agrees_in_table_csv_and_json(
        plans: dict[tuple[str, str], lrrules.Plan]) -> None:
    plan = plans["examples/muon-adamw.yaml", "hf:examples/integrations/tiny-llama"]
    routes = [g["optimizer"] for g in plan.to_dict()["groups"]]
    assert set(routes) == {"default", "muon"}
    for width in (None, 80):
        table = _table(plan_table(plan, "t", width=width), len(plan.groups))
        column = 1  # beside the group index
        assert table[0].split()[column] in ("optimizer", "optim")
        assert [line.split()[column] for line in table[1:]] == routes
    rows = list(csv.DictReader(io.StringIO(to_csv(plan_rows(plan, False)))))
    assert [r["optimizer"] for r in rows] == routes
    per_param = list(csv.DictReader(io.StringIO(to_csv(plan_rows(plan, True)))))
    by_group = {g["index"]: g["optimizer"] for g in plan.to_dict()["groups"]}
    assert all(r["optimizer"] == by_group[int(r["group"])] for r in per_param if r["group"])
    params = _table(plan_table(plan, "t", per_param=True), len(plan.params))
    at = params[0].split().index("optimizer")
    for a, line in zip(plan.params, params[1:]):
        assert line.split()[at] == (by_group[a.group] if a.group is not None else "-")


def test_a_file_with_one_optimizer_shows_no_optimizer_column(plans: dict[tuple[str, str], lrrules.Plan]) -> None:
    plan = plans["examples/resnet18-discriminative.yaml", "resnet18"]
    assert "optimizer" not in plan_table(plan).splitlines()[1]
    assert json.loads(json.dumps(plan.to_dict()))["groups"][0]["optimizer"] == "default"


@pytest.mark.parametrize("summary", [False, True])
def test_the_diff_table_fits_80_columns_naming_the_files_above_it(summary: bool) -> None:
    from lrrules.plan import diff_plans
    from lrrules.explain import diff_summary, diff_table

    model = open_model("resnet18").module
    old, new = "examples/resnet18-discriminative.yaml", "examples/resnet18-frozen-backbone.yaml"
    old_plan, new_plan = lrrules.resolve(lrrules.load(old), model), lrrules.resolve(lrrules.load(new), model)
    changes = diff_plans(old_plan, new_plan)
    rows = diff_summary(changes, old_plan, new_plan) if summary else None
    lines = diff_table(changes, old, new, rows, width=80).splitlines()
    assert lines[:2] == [f"old: {old}", f"new: {new}"] and all(len(line) <= 80 for line in lines)
    body = lines[3:-1]
    values = [(r["old"], r["new"]) for r in rows] if rows else [(c.old, c.new) for c in changes]
    for line, (before, after) in zip(body, values):
        for value in (before, after):  # each value whole: the first of a summary's range, or the value
            shown = value[0] if isinstance(value, list) else value
            text = "-" if shown is None else f"{shown:.4g}" if isinstance(shown, float) else str(shown)
            assert text in line
    wide = diff_table(changes, old, new, rows).splitlines()
    assert old in wide[0] and new in wide[0]  # a pipe gets the files' names as headers, as before


def test_tables_align_and_fit_wide_and_combining_characters_by_the_columns_a_terminal_gives_them() -> None:
    # A terminal gives 日 two columns, a combining accent none: padding by characters shifted every
    # later column of such a row, and a table fitted to 80 characters ran past 80 columns.
    from lrrules.params import ParamInfo
    from lrrules.report import param_rows, param_table

    def columns(text: str) -> int:  # the cells a terminal uses for the characters of these names
        return sum(2 if "\u3000" <= c <= "\u9fff" or c == "😀" else 0 if c == "\u0301" else 1 for c in text)

    names = ["fc.weight", "日本語の名前.weight", "e\u0301.bias", "emoji😀.bias", "層" * 60 + ".weight"]
    params = [ParamInfo(n, (4, 4), None, True, i) for i, n in enumerate(names)]
    for width in (None, 80, 40):
        lines = param_table(param_rows(params, [None] * len(params)), 0, width).splitlines()[:-1]
        # The shape column starts at one column in every line: the name column's width plus two.
        starts = {columns(line[:line.index("4x4" if i else "shape")]) for i, line in enumerate(lines)}
        assert len(starts) == 1, lines
        if width == 80:  # at 40 the numbers alone need more: the terminal wraps, nothing is cut
            assert all(columns(line) <= width for line in lines), lines
