"""Loading: every error of a file reported together, each at its file:line:col."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lrrules
from lrrules.errors import RuleFileError

MANY = """\
version: 1
defaults: {lr: 0.1}
rules:
  - {name: a, match: 'x.*'}
  - {name: a, match: 'y.*'}
  - {name: f1, fallback: true}
  - {name: f2, fallback: true}
  - {name: b, match: 'z.*', lr: -1}
modifiers:
  - {name: b, match: '*'}
"""


def test_cross_entry_errors_and_field_errors_are_all_reported_together_with_their_places(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(MANY)
    with pytest.raises(RuleFileError) as caught:
        lrrules.load(path)
    found = [(e.line, e.col, e.loc, e.message) for e in caught.value.errors]
    assert found == [
        (5, 12, ("rules", 1, "name"), "the name 'a' is used twice (first in rules[0]); names must be unique"),
        (7, 26, ("rules", 3, "fallback"), "a second fallback rule (the first is rules[2]); keep one"),
        (8, 33, ("rules", 4, "lr"), "-1 is negative; rates and decays are >= 0, got -1"),
        (10, 12, ("modifiers", 0, "name"), "the name 'b' is used twice (first in rules[4]); names must be unique"),
    ]
    assert all(e.path == str(path) for e in caught.value.errors)


def test_an_error_under_layers_patterns_keeps_its_place(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("version: 1\ndefaults: {lr: 0.1}\nlayers:\n  by: patterns\n  patterns:\n"
                    "    - 'a.*'\n    - {regex: '(open'}\nrules:\n  - {name: all, match: '*'}\n")
    with pytest.raises(RuleFileError) as caught:
        lrrules.load(path)
    (error,) = caught.value.errors
    assert error.loc == ("layers", "patterns", 1, "regex", 0)
    assert (error.line, str(error).split(":")[0]) == (7, str(path))
    assert str(error).startswith(f"{path}:7:")


def test_model_validate_still_refuses_a_name_used_twice() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="used twice"):
        lrrules.RuleSet.model_validate({"version": 1, "defaults": {"lr": 1},
                                        "rules": [{"name": "a", "match": "x"}, {"name": "a", "match": "y"}]})


# --- where each kind of validator error points -------------------------------------------------
# Each case marks the spot it expects with a '@' in the text: the line and column come from the
# text itself (the '@' removed), not from the loader. ``expr`` is the formula or regex shown, and the
# last item where the caret points in it: the text it points at, an offset, or None for no caret.

HEAD = "version: 1\ndefaults: {lr: 0.1}\n"
POSITIONS = [
    ("regex invalid", HEAD + "rules:\n  - {name: a, match: {regex: @'a(b'}}\n",
     ("rules", 0, "match", "regex", 0), "invalid regex: missing )", "a(b", 3),
    ("regex too big", HEAD + "rules:\n  - {name: a, match: {regex: @'(a{1000}){1000}'}}\n",
     ("rules", 0, "match", "regex", 0), "expands to more than 100000 units", "(a{1000}){1000}", None),
    ("regexes grow too much together", HEAD + "rules:\n" + "".join(
        f"  - {{name: r{i}, match: {{regex: {'@' if i == 2 else ''}'(?:a{i}b){{30000}}'}}}}\n"
        for i in range(3)),
     ("rules", 2, "match", "regex", 0), "together expand by more than 200000 units", "(?:a2b){30000}", None),
    ("regex group name taken", HEAD + "layers:\n  by: patterns\n  patterns:\n    - {regex: @'x(?P<depth>\\d)'}\n",
     ("layers", "patterns", 0, "regex", 0), "regex group 'depth' has the name of a formula variable",
     r"x(?P<depth>\d)", "depth"),
    ("regex group named as a var", "version: 1\nvars: {k: 1}\ndefaults: {lr: 0.1}\nrules:\n"
     "  - name: a\n    match:\n      any:\n        - {regex: @'(?P<k>\\d)'}\n",
     ("rules", 0, "match", "any", 0, "regex", 0), "has the name of a var of this file", r"(?P<k>\d)", "k"),
    ("formula in a rule", HEAD + "rules:\n  - name: a\n    match: '*'\n    lr_mult: @'2 ** dpeth'\n",
     ("rules", 0, "lr_mult"), "unknown name 'dpeth' (did you mean 'depth'?)", "2 ** dpeth", "dpeth"),
    ("formula in a modifier", HEAD + "rules: [{name: a, match: '*'}]\nmodifiers:\n  - name: m\n    match: 'x'\n"
     "    weight_decay: @'1 + foo'\n", ("modifiers", 0, "weight_decay"), "unknown name 'foo'", "1 + foo", "foo"),
    ("formula reads a capture of another rule", HEAD + "rules:\n  - name: a\n    match: {regex: 'b(?P<i>\\d)'}\n"
     "  - name: c\n    match: 'c'\n    lr: @'base_lr * i'\n", ("rules", 1, "lr"), "unknown name 'i'",
     "base_lr * i", "i"),
    ("where condition", HEAD + "rules:\n  - {name: a, match: {where: @'max(ndim, foo.bar) > 1'}}\n",
     ("rules", 0, "match", "where"), "attribute access is not allowed", "max(ndim, foo.bar) > 1", "foo.bar"),
    ("lr_schedule", HEAD + "rules:\n  - name: a\n    match: '*'\n    lr_schedule: @'stp / total_steps'\n",
     ("rules", 0, "lr_schedule"), "unknown name 'stp' (did you mean 'step'?)", "stp / total_steps", "stp"),
    ("formula that is negative", HEAD + "rules:\n  - {name: a, match: '*', lr_mult: @'1 - 2'}\n",
     ("rules", 0, "lr_mult"), "the value must be a finite number >= 0", "1 - 2", 0),
    ("formula in defaults", "version: 1\nvars: {base: 0.1}\ndefaults: {lr: @'bse * 2'}\n",
     ("defaults", "lr"), "unknown name 'bse' (did you mean 'base'?); known names: base; a formula in defaults "
     "reads only vars", "bse * 2", "bse"),
    ("option formula in a rule", HEAD + "rules:\n  - name: a\n    match: '*'\n    options: {momentum: @'0.9 ** dpeth'}\n",
     ("rules", 0, "options", "momentum"), "unknown name 'dpeth'", "0.9 ** dpeth", "dpeth"),
    ("option formula in a modifier", HEAD + "rules: [{name: a, match: '*'}]\nmodifiers:\n  - name: m\n    match: '*'\n"
     "    options:\n      betas: [0.9, 0.99]\n      eps: @'1e308 * 10'\n", ("modifiers", 0, "options", "eps"),
     "the value must be a finite number", "1e308 * 10", 0),
    ("var shadows a variable", "version: 1\nvars: {x: 1, @depth: 2}\ndefaults: {lr: 0.1}\n",
     ("vars", "depth"), "the var 'depth' has the name of a formula variable", "", None),
    ("defaults key hint", "version: 1\ndefaults:\n  lr: 0.1\n  @learning_rate: 0.2\n",
     ("defaults", "learning_rate"), "unknown key 'learning_rate' (did you mean 'lr'?)", "", None),
    ("defaults key close to weight_decay", "version: 1\ndefaults: {lr: 0.1, @weight_decy: 0.2}\n",
     ("defaults", "weight_decy"), "unknown key 'weight_decy' (did you mean 'weight_decay'?)", "", None),
    ("reserved option", HEAD + "rules:\n  - {name: a, match: '*', options: {momentum: 0.9, @params: 1}}\n",
     ("rules", 0, "options", "params"), "'params' is not an option here", "", None),
    ("reserved option in defaults", "version: 1\ndefaults:\n  lr: 0.1\n  @params: 1\n",
     ("defaults", "params"), "'params' is not an option here", "", None),
    ("reserved option of a named optimizer", HEAD + "optimizers:\n  muon: {type: SGD, @lr_scale: 2}\n",
     ("optimizers", "muon", "lr_scale"), "'lr_scale' is not an option here", "", None),
    ("optimizer named default", HEAD + "optimizers:\n  @default: {type: SGD}\n",
     ("optimizers", "default"), "'default' names the single `optimizer:`", "", None),
    ("route to an unknown optimizer", HEAD + "optimizers: {muon: {type: SGD}}\nrules:\n"
     "  - {name: a, match: '*', optimizer: @mun}\n", ("rules", 0, "optimizer"),
     "'mun' is no optimizer of this file (did you mean 'muon'?)", "", None),
    ("overrides names no rule", HEAD + "rules:\n  - {name: a, match: '*', overrides: [@b]}\n",
     ("rules", 0, "overrides", 0), "overrides: 'b' names no rule", "", None),
    ("name used twice", HEAD + "rules:\n  - {name: a, match: '*'}\nmodifiers:\n  - {name: @a, match: '*'}\n",
     ("modifiers", 0, "name"), "the name 'a' is used twice (first in rules[0])", "", None),
]


def _spot(text: str) -> tuple[str, int, int]:
    """The text without its '@' marker, and the 1-based line and column of the marker."""
    before = text[: text.index("@")]
    return text.replace("@", "", 1), before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


@pytest.mark.parametrize(("text", "loc", "message", "expr", "at"), [case[1:] for case in POSITIONS],
                         ids=[case[0] for case in POSITIONS])
def test_each_kind_of_validator_error_points_at_its_key_or_value_and_into_its_text(
        text: str, loc: tuple[str | int, ...], message: str, expr: str, at: str | int | None) -> None:
    quoted = text[text.index("@") + 1] == "'"
    text, line, col = _spot(text)
    with pytest.raises(RuleFileError) as caught:
        lrrules.loads(text, "r.yaml")
    (error,) = caught.value.errors
    offset = expr.index(at) if isinstance(at, str) else at
    # Inside a quoted one-line text the column is that of the character the caret points at.
    shift = offset + 1 if quoted and offset is not None else 0
    assert (error.path, error.line, error.col, error.loc) == ("r.yaml", line, col + shift, loc)
    assert message in error.message
    assert (error.expr, error.offset) == (expr, offset)
    if offset is not None:
        assert str(error).endswith("\n    " + expr + "\n    " + " " * offset + "^")


def test_after_extends_every_entry_and_key_is_placed_in_its_own_file(tmp_path: Path) -> None:
    # The parent's entries after a removal shift down; each error must still point at its own file.
    base = ("version: 1\ndefaults: {lr: 0.1, learning_rate: 1}\nvars: {k: 1, m: 2}\nrules:\n"
            "  - {name: a, match: 'a', lr: -1}\n  - {name: b, match: 'b'}\n  - {name: c, match: 'c', lr: -2}\n"
            "  - {name: e, match: 'e', lr: -3}\n")
    child = ("version: 1\nextends: base.yaml\nvars: {numel: 3}\nrules:\n  - {name: b, remove: true}\n"
             "  - {name: c, match: 'c', lr: -4}\n  - {name: d, match: 'd', lr: -5}\n")
    (tmp_path / "base.yaml").write_text(base)
    (tmp_path / "child.yaml").write_text(child)
    with pytest.raises(RuleFileError) as caught:
        lrrules.load(tmp_path / "child.yaml")

    def at(text: str, name: str, part: str) -> tuple[str, int, int]:
        i = text.index(part)
        return str((tmp_path / name).resolve()), text[:i].count("\n") + 1, i - text.rfind("\n", 0, i)

    found = {(e.path, e.line, e.col) for e in caught.value.errors}
    assert found == {at(base, "base.yaml", "learning_rate"),
                     at(child, "child.yaml", "numel"), at(base, "base.yaml", "-1"), at(base, "base.yaml", "-3"),
                     at(child, "child.yaml", "-4"), at(child, "child.yaml", "-5")}


# --- load() opens what the command line opens (issue 22) -------------------------------------------

def test_load_opens_a_shipped_preset_as_the_command_line_does(capsys: pytest.CaptureFixture[str]) -> None:
    from lrrules.cli import main

    rules = lrrules.load("lrrules:muon", overrides={"lr": 0.01})
    assert main(["show", "lrrules:muon", "--set", "lr=0.01", "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert rules.vars["lr"] == 0.01 and [r["name"] for r in shown["rules"]] == [r.name for r in rules.rules]


def test_build_takes_a_preset_name() -> None:
    import timm

    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    optimizer, plan = lrrules.build("lrrules:muon", model)
    # resnet18 has no 2-D hidden matrix: everything, the head fc.* too, goes to AdamW
    routed = {name: g.optimizer for g in plan.groups for name in g.params}
    assert routed["fc.weight"] == routed["fc.bias"] == "default"
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_load_reads_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    text = b"version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: all, match: '*'}\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text)))
    assert [r.name for r in lrrules.load("-").rules] == ["all"]


def test_load_reads_a_git_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: old, match: '*'}\n")
    git("add", "rules.yaml")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    rules.write_text("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: new, match: '*'}\n")
    monkeypatch.chdir(tmp_path)
    assert [r.name for r in lrrules.load("HEAD:rules.yaml").rules] == ["old"]
    assert [r.name for r in lrrules.load("rules.yaml").rules] == ["new"]


# --- load() takes the rule file as data: a mapping or an OmegaConf config ---------------------------

DATA = {"version": 1, "defaults": {"lr": 0.1}, "vars": {"d": 0.5},
        "rules": [{"name": "all", "match": "*", "lr_mult": "d"}]}


def test_load_takes_a_mapping_and_keeps_no_reference_to_it() -> None:
    data = json.loads(json.dumps(DATA))
    rules = lrrules.load(data, overrides={"d": 0.25})
    data["rules"][0]["name"] = "changed"
    assert [r.name for r in rules.rules] == ["all"] and rules.vars == {"d": 0.25} and rules.path == "<mapping>"


def test_errors_in_a_mapping_name_it_and_the_dotted_place_as_data() -> None:
    data = {**DATA, "rules": [{"name": "all", "match": "*"}, {"name": "b", "match": "x", "lr_mul": 2},
                              {"name": "c", "match": "y", "lr_mult": -1}]}
    with pytest.raises(RuleFileError) as caught:
        lrrules.load(data)
    found = {(e.path, e.line, e.col, e.loc) for e in caught.value.errors}
    assert found == {("<mapping>", 0, 0, ("rules", 1, "lr_mul")), ("<mapping>", 0, 0, ("rules", 2, "lr_mult"))}
    assert "<mapping>: rules[1].lr_mul: unknown key 'lr_mul' (did you mean 'lr_mult'?)" in str(caught.value)
    assert "<mapping>: rules[2].lr_mult: -1 is negative" in str(caught.value)


def test_a_mapping_that_holds_itself_is_refused_not_a_recursion_error() -> None:
    data: dict[str, object] = {"version": 1, "defaults": {"lr": 0.1}}
    data["rules"] = [data]
    with pytest.raises(RuleFileError, match="nests deeper than 64 levels"):
        lrrules.load(data)


def test_an_omegaconf_config_is_resolved_by_omegaconf_only_when_it_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    calls = []

    class DictConfig(dict):  # type: ignore[type-arg]
        __module__ = "omegaconf.dictconfig"

    class OmegaConf:
        @staticmethod
        def to_container(cfg: object, resolve: bool = False) -> object:
            calls.append(resolve)
            return {**DATA, "defaults": {"lr": 0.3}}  # what interpolation would resolve to

    monkeypatch.setitem(sys.modules, "omegaconf", types.SimpleNamespace(OmegaConf=OmegaConf))
    rules = lrrules.load(DictConfig(DATA))
    assert calls == [True] and rules.defaults.lr == 0.3 and rules.path == "<DictConfig>"
    lrrules.load(dict(DATA))
    assert calls == [True]  # a plain dict is never handed to omegaconf


def test_a_real_omegaconf_dictconfig_with_interpolation_loads() -> None:
    omegaconf = pytest.importorskip("omegaconf")
    config = omegaconf.OmegaConf.create({**DATA, "base": 0.2, "defaults": {"lr": "${base}"}})
    with pytest.raises(RuleFileError) as caught:
        lrrules.load(config)
    assert [(e.path, e.loc) for e in caught.value.errors] == [("<DictConfig>", ("base",))]
    del config["base"]
    config.defaults.lr = 0.2
    assert lrrules.load(config).defaults.lr == 0.2


_WORDS = st.sampled_from(["version", "defaults", "lr", "rules", "name", "match", "*", "lr_mult", "vars", "x", "1e-3"])
_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-5, 10**400) | st.floats() | _WORDS,
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_WORDS | st.integers(0, 3), inner,
                                                                                  max_size=4), max_leaves=15)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_WORDS, _VALUES, max_size=5))
def test_any_mapping_loads_or_raises_only_our_error_naming_the_mapping(data: dict) -> None:  # type: ignore[type-arg]
    try:
        lrrules.load({"version": 1, **data})
    except RuleFileError as exc:
        assert exc.errors and all(e.path == "<mapping>" and e.line == 0 for e in exc.errors), str(exc)
        assert all(str(e).startswith("<mapping>: ") for e in exc.errors)


def test_vars_of_the_wrong_type_are_an_error_at_their_place() -> None:
    with pytest.raises(RuleFileError) as caught:
        lrrules.loads("version: 1\ndefaults: {lr: 0.1}\nvars: 1\n", "r.yaml")
    assert [(e.line, e.col, e.loc) for e in caught.value.errors] == [(3, 7, ("vars",))]


@pytest.mark.parametrize(("text", "place", "loc"), [
    ("defaults:\n  lr: 0.1\n  options: {amsgrad: true}\n", (3, 12), ("defaults", "options")),
    ("defaults:\n  lr: 0.1\n  momentum: {a: 1}\n", (3, 13), ("defaults", "momentum")),
    ("defaults: {lr: 0.1}\nrules:\n  - {name: r, match: 'fc.*', options: {betas: {b1: 0.9}}}\n", (3, 47),
     ("rules", 0, "options", "betas")),
])
def test_a_mapping_where_an_option_value_goes_is_one_error_saying_what_an_option_may_be(
        text: str, place: tuple[int, int], loc: tuple[str | int, ...]) -> None:
    """Not pydantic's internals (one error per number type it tried, named after its validators)."""
    with pytest.raises(RuleFileError) as caught:
        lrrules.loads("version: 1\n" + text + ("rules:\n  - {name: all, fallback: true}\n" if "rules" not in text else
                                              "  - {name: all, fallback: true}\n"))
    [error] = caught.value.errors
    assert (error.line - 1, error.col) == place and tuple(error.loc) == loc
    assert "not a mapping" in error.message and "function-" not in error.message and "_plain_number" not in str(error)
