"""The language end to end under generated input: any rule file, however malformed, either loads,
resolves and reports, or raises an :class:`LrrulesError`; nothing else ever comes out."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrrules.errors import LrrulesError
from lrrules.loader import loads
from lrrules.report import plan_rows, plan_table
from lrrules.tables import to_csv, to_json
from lrrules.resolver import resolve_params

from .conftest import params

PARAMS = params(
    ("conv1.weight", (4, 3, 3, 3), "Conv2d"), ("bn1.weight", (4,), "BatchNorm2d"), ("bn1.bias", (4,), "BatchNorm2d"),
    ("blocks.0.attn.qkv.weight", (12, 4), "Linear"), ("blocks.1.mlp.fc1.bias", (8,), "Linear"),
    ("blocks.10.norm.weight", (4,), "LayerNorm"), ("head.weight", (2, 4), "Linear"), ("head.bias", (2,), "Linear"),
    ("b²", (2,), None), ("x\x1b[2J", (2,), None),
)

INTERESTING = st.sampled_from([
    "*", "*.bias", "head.*", "blocks.*", "^blocks\\.(?P<i>\\d+)\\.", "(?x) (.|.|.) + [A-Z]$", "(?P<decay>x)",
    "(?P<pi>.)", "0.5 ** depth", "1 / layer", "1 / (layer - layer)", "0.9 ** (num_layers - i)", "1e308 * 10",
    "0 - 1", "ｄｅｐｔｈ", "i", "decay", "base_lr * 2", "[z-a]", "(a+)+$", "010", "1:30", "-1", "nan", "",
    "\x00", "\u202e", "a{65535}{65535}", "Linear", "LayerNorm", "error", "defaults", "module", "tensor",
])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**320), 10**320), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), INTERESTING,
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=6) | INTERESTING, inner, max_size=3), max_leaves=8)
NUMBERS = st.one_of(st.floats(min_value=1e-12, max_value=1e300), st.integers(0, 10), INTERESTING, VALUES)
MATCHERS = st.one_of(
    INTERESTING, st.lists(INTERESTING, max_size=3), VALUES,
    st.fixed_dictionaries({}, optional={"glob": INTERESTING, "regex": INTERESTING, "module": INTERESTING,
                                        "ndim": st.integers(-1, 4) | VALUES, "not": INTERESTING}),
)
ENTRY = st.fixed_dictionaries(
    {"name": st.text(max_size=6) | INTERESTING},
    optional={"match": MATCHERS, "lr": NUMBERS, "lr_mult": NUMBERS, "weight_decay": NUMBERS,
              "weight_decay_mult": NUMBERS, "options": st.dictionaries(st.sampled_from(["betas", "eps", "momentum",
                                                                                       "lr", "x"]), NUMBERS,
                                                                      max_size=2),
              "freeze": st.booleans() | VALUES, "fallback": st.booleans(), "remove": st.booleans()},
)
FILES = st.fixed_dictionaries(
    {"version": st.just(1) | VALUES,
     "defaults": st.fixed_dictionaries({"lr": NUMBERS}, optional={"weight_decay": NUMBERS, "betas": VALUES,
                                                                  "eps": NUMBERS}) | VALUES},
    optional={"rules": st.lists(ENTRY, max_size=4) | VALUES, "modifiers": st.lists(ENTRY, max_size=3),
              "vars": st.dictionaries(st.sampled_from(["decay", "i", "pi", "depth", "x"]), NUMBERS, max_size=2),
              "unmatched": st.sampled_from(["error", "defaults"]) | VALUES,
              "layers": st.fixed_dictionaries({"by": st.sampled_from(["module", "tensor", "patterns", "timm"])},
                                              optional={"level": VALUES, "patterns": st.lists(MATCHERS, max_size=3)}),
              "phases": st.lists(st.fixed_dictionaries({}, optional={"from_epoch": VALUES, "freeze": MATCHERS}),
                                 max_size=2),
              "extends": VALUES},
)


def serialise(data: Any, fmt: str) -> str | None:
    try:
        return json.dumps(data) if fmt == "json" else yaml.safe_dump(data)
    except (ValueError, TypeError, yaml.YAMLError):  # a key hypothesis made that the format cannot hold
        return None


def run(text: str, fmt: str) -> None:
    try:
        rules = loads(text, "gen." + fmt, fmt)
        plan = resolve_params(rules, PARAMS)
        json.dumps(plan.to_dict(), allow_nan=False)  # every number it reports is finite
        to_json(plan.to_dict())
        plan_table(plan, "gen")
        to_csv(plan_rows(plan, True))
    except LrrulesError:
        pass


@pytest.mark.slow  # 250 generated files, resolved
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(FILES, st.sampled_from(["yaml", "json"]))
def test_a_generated_rule_file_loads_and_resolves_or_raises_only_our_error(data: Any, fmt: str) -> None:
    text = serialise(data, fmt)
    if text is not None:
        run(text, fmt)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FILES, st.sampled_from(["yaml", "json"]), st.integers(0, 10**6), st.text(max_size=8))
def test_a_damaged_rule_file_raises_only_our_error(data: Any, fmt: str, at: int, junk: str) -> None:
    text = serialise(data, fmt)
    if text is not None:
        cut = at % (len(text) + 1)
        run(text[:cut] + junk + text[cut:], fmt)
