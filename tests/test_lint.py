"""What `lrrules check RULES` decides from the file alone: a file that trains nothing on any model,
and a rule that only turns weight decay off where a modifier was meant; the second also as a hint on
the conflicts it causes against a model."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

import lrrules
from lrrules.cli import main
from lrrules.lint import lint, matches_every_name, shared_name
from lrrules.sources import open_model

HEAD = "version: 1\ndefaults: {lr: 0.1, weight_decay: 0.05}\n"
#: Models of different families; each names its parameters its own way.
MODELS = ["resnet18", "vit_tiny_patch16_224", "convnext_atto", "torchvision:mobilenet_v3_small"]


def _check(capsys: pytest.CaptureFixture[str], path: Path, *more: str) -> tuple[int, str, str]:
    code = main(["check", str(path), *more])
    out, err = capsys.readouterr()
    return code, out, err


def _line_col(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the value after the last ``needle`` (``    freeze: ``), found by hand."""
    for number, line in reversed(list(enumerate(text.splitlines(), 1))):
        if needle in line:
            return number, line.index(needle) + len(needle) + 1
    raise AssertionError(needle)


@pytest.fixture(scope="module")
def models() -> dict[str, object]:
    return {spec: open_model(spec).module for spec in MODELS}


# --- nothing trains ----------------------------------------------------------------------------

#: Every way to freeze everything whatever the model: (the rules, the text before the value responsible).
FREEZE_ALL = {
    "fallback freezes": ("rules:\n  - name: rest\n    fallback: true\n    freeze: true\n", "    freeze: "),
    "star freezes": ("rules:\n  - name: all\n    match: '*'\n    freeze: true\n", "    freeze: "),
    "double star": ("rules:\n  - name: all\n    match: '**'\n    freeze: true\n", "    freeze: "),
    "regex .*": ("rules:\n  - name: all\n    match: {regex: '.*'}\n    freeze: true\n", "    freeze: "),
    "regex ^.*$": ("rules:\n  - name: all\n    match: {regex: '^.*$'}\n    freeze: true\n", "    freeze: "),
    "any with a star": ("rules:\n  - name: all\n    match: {any: ['fc.*', '*']}\n    freeze: true\n", "    freeze: "),
    "list with a star": ("rules:\n  - name: all\n    match: ['head.*', '*']\n    freeze: true\n", "    freeze: "),
    "all of stars": ("rules:\n  - name: all\n    match: {all: ['*', {regex: '.+'}]}\n    freeze: true\n", "    freeze: "),
    "fallback lr 0": ("rules:\n  - name: rest\n    fallback: true\n    lr: 0\n", "    lr: "),
    "frozen parts, frozen rest": ("rules:\n  - name: stem\n    match: 'conv1.*'\n    freeze: true\n"
                                  "  - name: rest\n    fallback: true\n    freeze: true\n", "    freeze: "),
    "lr_mult 0 with a frozen rest": ("rules:\n  - name: head\n    match: 'fc.*'\n    lr_mult: 0\n"
                                     "  - name: rest\n    fallback: true\n    freeze: true\n", "    freeze: "),
}


@pytest.mark.parametrize("case", FREEZE_ALL, ids=list(FREEZE_ALL))
def test_a_file_that_freezes_everything_is_found_without_a_model(case: str, tmp_path: Path, models: dict[str, object],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    body, needle = FREEZE_ALL[case]
    text = HEAD + body
    path = tmp_path / "r.yaml"
    path.write_text(text)
    code, out, err = _check(capsys, path)
    line, col = _line_col(text, needle)
    assert code == 1 and not out and err.startswith(f"{path}:{line}:{col}: nothing trains on any model")
    found = [f for f in lint(lrrules.load(path)) if f.severity == "problem"]
    assert len(found) == 1 and "rule without 'freeze'" in err
    # The finding is true: on every model, no group trains (none at all, or each at lr 0).
    rules = lrrules.load(path)
    for model in models.values():
        assert all(g.lr == 0 for g in lrrules.resolve(rules, model).groups)  # type: ignore[arg-type]


#: Files that train something on some model: no finding without a model (conservative).
TRAINS_SOMEWHERE = {
    "a rule trains the head": "rules:\n  - {name: head, match: 'fc.*'}\n  - {name: rest, fallback: true, freeze: true}\n",
    "star frozen, head overrides": "rules:\n  - {name: all, match: '*', freeze: true}\n"
                                   "  - {name: head, match: 'fc.*', overrides: [all]}\n",
    "frozen by module only": "rules:\n  - {name: m, match: {module: '*'}, freeze: true}\n",
    "a regex that is not .*": "rules:\n  - {name: a, match: {regex: 'layer.*'}, freeze: true}\n",
    "star with ndim": "rules:\n  - {name: a, match: {glob: '*', ndim: 2}, freeze: true}\n",
    "not": "rules:\n  - {name: a, match: {not: 'fc.*'}, freeze: true}\n",
    "an lr formula": "rules:\n  - {name: all, match: '*', lr_mult: 'depth'}\n",
    "unmatched get the defaults": "unmatched: defaults\nrules:\n  - {name: stem, match: 'conv1.*', freeze: true}\n",
    "a modifier sets an lr": "rules:\n  - {name: rest, fallback: true, lr: 0}\n"
                             "modifiers:\n  - {name: head, match: 'fc.*', lr: 0.01}\n",
    "routed to an optimizer of its own lr": "optimizers:\n  muon: {type: Muon, lr: 0.02}\n"
                                            "rules:\n  - {name: m, match: '*', optimizer: muon}\n",
    "phase unfreezes later": "rules:\n  - {name: rest, fallback: true}\n"
                             "phases:\n  - {from_epoch: 0, freeze: '*'}\n  - {from_epoch: 2, unfreeze: 'fc.*'}\n",
    "phase starts later": "rules:\n  - {name: rest, fallback: true}\nphases:\n  - {from_epoch: 1, freeze: '*'}\n",
    "phase freezes part": "rules:\n  - {name: rest, fallback: true}\nphases:\n  - {from_step: 0, freeze: 'layer*'}\n",
}


@pytest.mark.parametrize("case", TRAINS_SOMEWHERE, ids=list(TRAINS_SOMEWHERE))
def test_no_false_alarm_on_a_file_that_trains_somewhere(case: str) -> None:
    rules = lrrules.loads(HEAD + TRAINS_SOMEWHERE[case], "r.yaml")
    assert [f for f in lint(rules) if f.severity == "problem"] == []


@pytest.mark.parametrize("unit", ["epoch", "step"])
def test_phases_that_freeze_everything_from_the_start(unit: str, tmp_path: Path, models: dict[str, object],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    text = HEAD + f"rules:\n  - {{name: rest, fallback: true}}\nphases:\n  - {{from_{unit}: 3, freeze: 'fc.*'}}\n" \
                  f"  - {{from_{unit}: 0, freeze: {{regex: '.*'}}}}\n"
    path = tmp_path / "r.yaml"
    path.write_text(text)
    code, _, err = _check(capsys, path)
    line = text.splitlines().index(f"  - {{from_{unit}: 0, freeze: {{regex: '.*'}}}}") + 1
    assert code == 1 and err.startswith(f"{path}:{line}:") and "nothing trains at any point" in err
    plan = lrrules.resolve(lrrules.load(path), models["resnet18"])  # type: ignore[arg-type]
    assert len(plan.at(**{unit: 0}).phase_frozen) == sum(len(g.params) for g in plan.groups)


@pytest.mark.parametrize("model", ["resnet18", "vit_tiny_patch16_224"])
def test_with_a_model_a_plan_that_trains_nothing_is_a_problem(model: str, tmp_path: Path, models: dict[str, object],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    count = sum(1 for _ in models[model].parameters())  # type: ignore[attr-defined]
    path = tmp_path / "r.yaml"
    path.write_text(HEAD + FREEZE_ALL["fallback freezes"][0])
    code, out, _ = _check(capsys, path, "--model", model)
    assert code == 1 and f"nothing trains: all {count} tensors are frozen (frozen by 'rest')" in out
    main(["resolve", str(path), "--model", model])  # the table says it under the totals
    assert f"nothing trains: all {count} tensors are frozen" in capsys.readouterr().out
    path.write_text(HEAD + FREEZE_ALL["fallback lr 0"][0])
    code, out, _ = _check(capsys, path, "--model", model)
    assert code == 1 and f"nothing trains: every group has lr 0 ({count} tensors)" in out


@pytest.mark.parametrize("matcher", ["*", "**", ["a", "*"], {"regex": ".*"}, {"any": ["x", "*"]},
                                     {"glob": "*", "regex": "^.+$"}])
def test_matchers_that_match_every_name(matcher: object) -> None:
    rule = lrrules.loads(HEAD + yaml.safe_dump({"rules": [{"name": "a", "match": matcher}]}), "r.yaml").rules[0]
    assert matches_every_name(rule.match)


# --- weight decay off, written as a rule -------------------------------------------------------

#: Globs of the kind a file holds; shared_name is checked against fnmatch on every pair.
GLOBS = ["*", "*.bias", "layer*", "fc.*", "*norm*", "*.weight", "blocks.?.attn.*", "head.*", "a?c", "*.*.bias",
         "layer1.*", "layer2.*", "x"]


@pytest.mark.parametrize(("a", "b"), list(itertools.product(GLOBS, GLOBS)))
def test_shared_name_is_a_name_both_globs_match_or_none_when_none_is(a: str, b: str) -> None:
    import fnmatch

    name = shared_name(a, b)
    if name is not None:
        assert fnmatch.fnmatchcase(name, a) and fnmatch.fnmatchcase(name, b)
    else:  # no name of a few characters from the globs' own letters matches both
        letters = sorted(set((a + b).replace("*", "").replace("?", "")) | {"z"})
        for size in range(0, 5):
            for chars in itertools.product(letters, repeat=size):
                word = "".join(chars)
                assert not (fnmatch.fnmatchcase(word, a) and fnmatch.fnmatchcase(word, b)), word


@pytest.mark.parametrize(("a", "b", "shortest"), [
    ("a**", "*a", "a"), ("*.", ".**", "."), ("*a*", "a**\\", "a\\"), ("\\.**", "*..", "\\.."), ("a**?", "*a.?", "a.a"),
])
def test_shared_name_is_the_shortest_name_both_globs_match(a: str, b: str, shortest: str) -> None:
    # The warning quotes it as an example: 'a' for 'a**' and '*a', not 'aa'.
    import fnmatch

    name = shared_name(a, b)
    assert name is not None and len(name) == len(shortest)
    assert fnmatch.fnmatchcase(name, a) and fnmatch.fnmatchcase(name, b)


#: Newcomer files per model: each gives its blocks their lr by rules and writes "no decay for biases
#: and norms" as one more rule, which conflicts with them.
NEWCOMER = {
    "resnet18": "rules:\n  - name: stem\n    match: ['conv1.*', 'bn1.*']\n    lr_mult: 0.1\n"
                "  - name: backbone\n    match: 'layer*'\n    lr_mult: 0.5\n  - name: head\n    match: 'fc.*'\n"
                "    lr_mult: 10\n  - name: no-decay\n    match: '*.bias'\n    weight_decay: 0\n",
    "vit_tiny_patch16_224": "rules:\n  - name: embed\n    match: ['patch_embed.*', 'cls_token', 'pos_embed']\n"
                            "  - name: blocks\n    match: 'blocks.*'\n    lr_mult: 0.5\n"
                            "  - name: top\n    match: ['norm.*', 'head.*']\n    lr_mult: 10\n"
                            "  - name: no-decay\n    match: ['*.bias', '*norm*']\n    weight_decay_mult: 0\n",
    "convnext_atto": "rules:\n  - name: stem\n    match: 'stem.*'\n  - name: stages\n    match: 'stages.*'\n"
                     "    lr_mult: 0.5\n  - name: head\n    match: 'head.*'\n    lr_mult: 10\n"
                     "  - name: no-decay\n    match: {any: ['*.bias', {ndim: 1}]}\n    weight_decay: 0\n",
}


def _as_modifier(text: str, hint: str) -> str:
    """The file with the rule moved as the hint's YAML says: the rule out, the hint's entry in."""
    data = yaml.safe_load(text)
    entry = yaml.safe_load(hint[hint.index("modifiers:"):])["modifiers"][0]
    data["rules"] = [r for r in data["rules"] if r["name"] != entry["name"]]
    data["modifiers"] = [entry]
    return yaml.safe_dump(data, sort_keys=False)


@pytest.mark.parametrize("model", list(NEWCOMER))
def test_a_decay_only_rule_in_a_conflict_gets_the_modifier_hint_and_the_hint_works(
        model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = HEAD + NEWCOMER[model]
    path = tmp_path / "r.yaml"
    path.write_text(text)
    code, out, _ = _check(capsys, path, "--model", model)
    assert code == 1 and "conflicts (error)" in out and "'no-decay'" in out
    assert "usually meant as a modifier: move it under `modifiers:`" in out
    hint = out[out.index("hint: "):]
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(_as_modifier(text, "\n".join(line[2:] for line in hint.splitlines())))
    assert _check(capsys, fixed, "--model", model) == (0, "", "")
    # The table of `resolve` says it too, under the conflicts, and `explain` under the conflict.
    main(["resolve", str(path), "--model", model])
    assert "move it under `modifiers:`" in capsys.readouterr().out
    main(["explain", str(path), "--model", model, "*.bias"])
    explained = capsys.readouterr().out
    assert "CONFLICT" in explained and "move it under `modifiers:`" in explained


@pytest.mark.parametrize("model", ["resnet18", "vit_tiny_patch16_224"])
def test_the_decay_only_rule_is_a_warning_without_a_model_where_its_globs_overlap(
        model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = HEAD + NEWCOMER[model]
    path = tmp_path / "r.yaml"
    path.write_text(text)
    code, out, err = _check(capsys, path)
    line = text.splitlines().index("  - name: no-decay") + 2  # its match, the line after its name
    assert code == 0 and not out and err.startswith(f"{path}:{line}:12: warning: 'no-decay' sets only weight decay")
    assert "move it under `modifiers:`" in err
    assert _check(capsys, path, "--strict")[0] == 1
    code, out, _ = _check(capsys, path, "--format", "github")
    assert code == 0 and out.startswith(f"::warning file={path},line={line},col=12,")


def test_a_decay_only_rule_over_names_no_other_rule_claims_is_left_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Biases by one rule, weights by others: a decay-only rule that is right as a rule.
    text = HEAD + "rules:\n  - {name: weights, match: '*.weight', lr_mult: 0.5}\n" \
                  "  - {name: biases, match: '*.bias', weight_decay: 0}\n"
    path = tmp_path / "r.yaml"
    path.write_text(text)
    assert _check(capsys, path, "--strict") == (0, "", "")
    assert _check(capsys, path, "--model", "resnet18") == (0, "", "")


def test_huge_globs_in_a_hostile_file_are_left_unread_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    # 2 x 200 globs of 400 characters: 6 x 10^9 steps to compare them all; the budget reads a few.
    from lrrules import lint as module

    globs = [("a*" * 200) + str(i) for i in range(200)]
    text = HEAD + yaml.safe_dump({"rules": [{"name": "wide", "match": globs, "lr_mult": 0.5},
                                            {"name": "nd", "match": globs[::-1], "weight_decay": 0}]})
    rules = lrrules.loads(text, "r.yaml")
    compared: list[int] = []
    real = module.shared_name
    monkeypatch.setattr(module, "shared_name", lambda a, b: compared.append((len(a) + 1) * (len(b) + 1)) or real(a, b))
    assert all(f.severity == "warning" for f in lint(rules))
    assert 0 < sum(compared) <= module.OVERLAP_BUDGET


def test_thousands_of_small_rules_are_compared_within_the_budget_not_pair_by_pair(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # 3000 decay-only rules beside 3000 others: 18 million pairs of rules, each cheap, took 10 s to
    # walk; every pair looked at counts against the budget. Counted, not timed: the glob pairs
    # compared stay within the budget, far below the 18 million pairs.
    import lrrules.lint as module

    compared: list[int] = []
    real = module._literal_ends_agree
    monkeypatch.setattr(module, "_literal_ends_agree", lambda a, b: compared.append(1) or real(a, b))
    entries = []
    for i in range(3000):
        entries += [{"name": f"d{i}", "match": f"x{i}.*.bias", "weight_decay": 0},
                    {"name": f"r{i}", "match": f"y{i}.*", "lr_mult": 2}]
    entries.append({"name": "all-biases", "match": "*.bias", "lr_mult": 0.5})
    rules = lrrules.loads(HEAD + yaml.safe_dump({"rules": entries}), "r.yaml")
    found = lint(rules)
    assert 0 < len(compared) <= module.OVERLAP_BUDGET < 3000 * 6001
    # The first decay-only rule is still compared with every other rule: it shares x0.a.bias with 'all-biases'.
    assert found and found[0].loc == ("rules", 0, "match") and "'all-biases'" in found[0].message


def test_json_findings_carry_the_severity_and_the_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    frozen, newcomer = tmp_path / "frozen.yaml", tmp_path / "newcomer.yaml"
    frozen.write_text(HEAD + FREEZE_ALL["star freezes"][0])
    newcomer.write_text(HEAD + NEWCOMER["resnet18"])
    code, out, err = _check(capsys, frozen, str(newcomer), "--format", "json")
    found = json.loads(out)
    assert code == 1 and not err
    line, col = _line_col(HEAD + FREEZE_ALL["star freezes"][0], "    freeze: ")
    assert [(f["file"], f["severity"], f["line"], f["col"], f["model"]) for f in found] == [
        (str(frozen), "problem", line, col, None),
        (str(newcomer), "warning", (HEAD + NEWCOMER["resnet18"]).splitlines().index("  - name: no-decay") + 2, 12, None)]


def test_a_decay_only_rule_that_outranks_the_other_through_a_chain_of_overrides_is_no_conflict(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Precedence is transitive (docs/language.md): 'no-decay' outranks 'blocks', which outranks
    # 'all', so 'no-decay' outranks 'all' and no name is claimed twice; --strict must pass.
    text = HEAD + ("rules:\n  - {name: all, match: '*', lr_mult: 1}\n"
                   "  - {name: blocks, match: 'layer*', lr_mult: 0.5, overrides: [all]}\n"
                   "  - {name: no-decay, match: '*.bias', weight_decay: 0, overrides: [blocks]}\n")
    path = tmp_path / "r.yaml"
    path.write_text(text)
    assert _check(capsys, path, "--model", "resnet18") == (0, "", "")
    assert _check(capsys, path, "--strict") == (0, "", "")
    # The other way round: 'all' outranks 'no-decay' through 'blocks'.
    reverse = HEAD + ("rules:\n  - {name: no-decay, match: '*.bias', weight_decay: 0}\n"
                      "  - {name: blocks, match: 'layer*', lr_mult: 0.5, overrides: [no-decay]}\n"
                      "  - {name: all, match: '*', lr_mult: 1, overrides: [blocks]}\n")
    path.write_text(reverse)
    assert _check(capsys, path, "--strict") == (0, "", "")


# --- an optimizer type the torch-free table lacks ------------------------------------------------

TYPES = "version: 1\ndefaults: {lr: 0.1}\noptimizer: {type: AdamW}\noptimizers:\n  other: {type: %s}\nrules: []\n"


def test_a_typo_in_an_optimizers_entry_is_refused_without_a_model_at_its_place(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(TYPES % "SGDD")
    code, _, err = _check(capsys, path)
    assert code == 2 and err.startswith(f"{path}:5:17: optimizer type 'SGDD' names no optimizer (did you mean 'SGD'"), err


class _FakeOptim:
    class AdamX:  # a class a newer torch has and the table does not
        pass


class _FakeTorch:
    optim = _FakeOptim


@pytest.mark.parametrize(("torch_here", "name", "expected"), [
    (None, "AdamX", "warning"),        # no torch to ask (as under the pre-commit hook): a warning
    (None, "AdamWW", "warning"),
    (_FakeTorch, "AdamX", "accepted"),  # an imported torch that has the class
    (_FakeTorch, "AdamWW", "refused"),  # an imported torch that lacks it
])
def test_a_type_the_table_lacks_is_refused_only_where_torch_could_not_have_it(
        torch_here: object, name: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import lrrules.signatures

    # Another torch than the table's is installed, and timm is not: the table may lack a new class.
    monkeypatch.setattr(lrrules.signatures, "installed", lambda package: "9.9" if package == "torch" else None)
    if torch_here is None:
        monkeypatch.delitem(sys.modules, "torch", raising=False)
    else:
        monkeypatch.setitem(sys.modules, "torch", torch_here)
    path = tmp_path / "r.yaml"
    path.write_text(TYPES % name)
    code, out, err = _check(capsys, path)
    if expected == "accepted":
        assert (code, out, err) == (0, "", "")
    elif expected == "refused":
        assert code == 2 and f":5:17: optimizer type '{name}' names no optimizer" in err, err
    else:
        assert code == 0 and f"r.yaml:5:17: warning: optimizer type '{name}' is not one of torch " in err, err
        assert _check(capsys, path, "--strict")[0] == 1
