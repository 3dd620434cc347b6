"""The language's compliance suite: every case in tests/spec/ (see its README) as one test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lrrules.errors import RuleFileError
from lrrules.loader import loads
from lrrules.params import ParamInfo
from lrrules.resolver import resolve_params

CASES = sorted((Path(__file__).parent / "spec").glob("*.yaml"))


def infos(rows: list[list[Any]]) -> list[ParamInfo]:
    out = []
    for i, (name, shape, module, *rest) in enumerate(rows):
        requires_grad = rest[0] if rest else True
        aliases = tuple(rest[1]) if len(rest) > 1 else ()
        out.append(ParamInfo(name, tuple(shape), module, requires_grad, i, aliases))
    return out


def same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, float) or (isinstance(expected, int) and isinstance(actual, float)):
        return actual == pytest.approx(expected, rel=1e-12, abs=1e-15)
    if isinstance(expected, list):
        return len(actual) == len(expected) and all(same(a, e) for a, e in zip(actual, expected))
    if isinstance(expected, dict):
        return dict(actual).keys() == expected.keys() and all(same(actual[k], v) for k, v in expected.items())
    return bool(actual == expected)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_spec_case(path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    text = case["rules"]
    params = infos(case.get("params", []))
    if "error" in case:
        want = case["error"]
        with pytest.raises(RuleFileError) as err:
            resolve_params(loads(text, "rules.yaml"), params)
        first = err.value.errors[0]
        assert want["message"] in first.message, str(err.value)
        assert first.path == "rules.yaml"
        assert first.line == want["line"], str(err.value)
        line = text.splitlines()[first.line - 1]
        assert line[first.col - 1 :].startswith(want["at"]), f"col {first.col} of {line!r}: {err.value}"
        assert len(err.value.errors) == want.get("count", 1), str(err.value)
        return

    plan = resolve_params(loads(text, "rules.yaml"), params)
    expect = case["expect"]
    by_name = {a.name: a for a in plan.params}
    assert list(by_name) == [p.name for p in params], "every parameter appears once, in order"
    for name, want in expect.get("params", {}).items():
        got = by_name[name]
        if isinstance(want, str):
            assert got.status == want, f"{name}: {got}"
            continue
        assert got.status == "trainable", f"{name}: {got.status} ({got.note})"
        for key, value in want.items():
            actual = getattr(got, key)
            actual = list(actual) if isinstance(actual, tuple) else actual
            assert same(actual, value), f"{name}.{key}: expected {value!r}, got {actual!r}"
    for key in ("unmatched", "unused_rules", "zero_lr"):
        if key in expect:
            assert list(getattr(plan, key)) == expect[key]
    if "conflicts" in expect:
        got = [{"param": c.param, "kind": c.kind, "rules": list(c.rules), **({"setting": c.setting} if c.setting else {})}
               for c in plan.conflicts]
        assert got == expect["conflicts"]
    if "frozen" in expect:
        assert {f.param: f.reason for f in plan.frozen} == expect["frozen"]
    if "groups" in expect:
        assert len(plan.groups) == expect["groups"]
    if "ok" in expect:
        assert plan.ok is expect["ok"]
    grouped = [n for g in plan.groups for n in g.params]
    assert sorted(grouped) == sorted(a.name for a in plan.params if a.status == "trainable")
