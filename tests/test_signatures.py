"""The optimizer check without torch: the table against the installed torch and timm, the values torch
refuses (checked against torch constructing the optimizer), the places of errors, and no torch import."""

from __future__ import annotations

import itertools
import json
import numbers
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import lrrules
from lrrules.errors import OptimizerError
from lrrules.optim import check_optimizer
from lrrules.optimizer_table import GENERATED_WITH, OPTIONS, TIMM, TORCH, UNAVAILABLE
from lrrules.signatures import check, decode, known, options_of

ROOT = Path(__file__).resolve().parent.parent


def encode(options: dict[str, Any] | None) -> str | None:
    """The table's text for an optimizer's options (:func:`lrrules.signatures.decode` reads it back):
    ``name#`` for a number, ``name=0.9,0.999`` for numbers in a tuple, ``name`` else."""
    if options is None:
        return None
    def number(value: Any) -> bool:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)

    words = []
    for name, default in options.items():
        if isinstance(default, tuple) and all(number(d) for d in default):
            name += "=" + ",".join(map(repr, default))
        elif number(default):
            name += "#"
        words.append(name)
    return " ".join(words)


# The table is regenerated here, by the test that keeps it true: `python tests/test_signatures.py`
# prints the tables, to paste into lrrules/optimizer_table.py below its docstring.
def regenerated() -> str:
    """The text of lrrules/optimizer_table.py's tables from the installed torch and timm."""
    import textwrap

    import timm
    from timm.optim import get_optimizer_class, list_optimizers

    torch_table: dict[str, str | None] = {
        n: encode(options_of(v)) for n, v in sorted(vars(torch.optim).items())
        if isinstance(v, type) and issubclass(v, torch.optim.Optimizer) and v is not torch.optim.Optimizer}
    timm_table: dict[str, str | None] = {}
    for n in map(str, list_optimizers()):
        try:
            timm_table[n] = encode(options_of(get_optimizer_class(n)))
        except Exception:  # noqa: BLE001  (timm raises plain errors for what needs CUDA or a package)
            timm_table[n] = "unavailable"
    texts = sorted({t for t in [*torch_table.values(), *timm_table.values()] if t not in (None, "unavailable")})
    index = {t: i for i, t in enumerate(texts)}
    index.update({None: None, "unavailable": UNAVAILABLE})  # type: ignore[dict-item]
    lines = [f'GENERATED_WITH = {{"torch": "{torch.__version__.split("+")[0]}", "timm": "{timm.__version__}"}}',
             "OPTIONS: list[str] = ["]
    for i, text in enumerate(texts):  # one string over several lines, the words a line holds
        parts = textwrap.wrap(text, 104, break_long_words=False)
        lines += [f"    {p + ' ' if j < len(parts) - 1 else p!r}" for j, p in enumerate(parts)]
        lines[-1] += f",  # {i}"
    lines.append("]")
    for var, table in (("TORCH", torch_table), ("TIMM", timm_table)):
        body = ", ".join(f"{k!r}: {index[table[k]]}" for k in sorted(table))  # type: ignore[index]
        lines += [f"{var}: dict[str, int | None] = {{", textwrap.fill(body, 116, initial_indent="    ",
                                                                     subsequent_indent="    "), "}"]
    return "\n".join(lines)


def test_the_table_agrees_with_every_installed_torch_optimizer() -> None:
    installed = {n: v for n, v in vars(torch.optim).items()
                 if isinstance(v, type) and issubclass(v, torch.optim.Optimizer) and v is not torch.optim.Optimizer}
    assert set(installed) == set(TORCH)
    for name, cls in installed.items():
        entry = TORCH[name]
        assert encode(options_of(cls)) == (None if entry is None else OPTIONS[entry]), name


def test_the_table_agrees_with_every_installed_timm_optimizer() -> None:
    from timm.optim import get_optimizer_class, list_optimizers

    assert set(list_optimizers()) == set(TIMM)
    for name in list_optimizers():
        try:
            factory = get_optimizer_class(name)
        except Exception:  # needs CUDA or a package here: the table says so
            assert TIMM[name] == UNAVAILABLE, name
            continue
        entry = TIMM[name]
        assert entry != UNAVAILABLE and encode(options_of(factory)) == (None if entry is None else OPTIONS[entry]), name


def test_the_table_reads_back_what_a_check_needs_of_each_default() -> None:
    # SGD's nesterov check reads momentum and dampening (numbers: read back as 0, torch's own
    # defaults) and nesterov (not True); a tuple's length and example come back as written.
    sgd, real = known("SGD").options, options_of(torch.optim.SGD)  # type: ignore[union-attr]
    assert real is not None and sgd is not None
    assert (sgd["momentum"], sgd["dampening"]) == (real["momentum"], real["dampening"]) == (0, 0)
    assert sgd["nesterov"] is not True and real["nesterov"] is False
    assert known("Rprop").options["etas"] == (0.5, 1.2)  # type: ignore[union-attr]


def _rules(defaults: dict[str, object], optimizer: str) -> lrrules.RuleSet:
    text = json.dumps({"version": 1, "defaults": {"lr": 0.1, **defaults}, "optimizer": {"type": optimizer},
                       "rules": [{"name": "all", "match": "*"}]})
    return lrrules.loads(text, "r.json")


def _torch_refuses(cls: type, defaults: dict[str, object]) -> bool:
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in defaults.items()}
    try:
        cls([torch.nn.Parameter(torch.zeros(2, 2))], lr=0.1, **kwargs)
    except (ValueError, RuntimeError):
        return True
    return False


def _options(name: str) -> dict[str, object]:
    found = known(name)
    return dict(found.options or {}) if found is not None else {}


_VALUES = [-1.0, -1e-12, 0.0, 1e-8, 0.5, 1.0, 2.0]
_CASES = [(name, key, value)
          for name, options in ((n, _options(n)) for n in TORCH)
          if options and name not in ("LBFGS", "SparseAdam")
          for key in ("eps", "momentum", "lr_decay", "initial_accumulator_value", "rho", "alpha")
          if key in options and isinstance(options[key], (int, float)) and not isinstance(options[key], bool)
          for value in _VALUES]


@pytest.mark.parametrize(("name", "key", "value"), _CASES)
def test_a_value_is_refused_exactly_where_torch_refuses_it(name: str, key: str, value: float) -> None:
    cls = getattr(torch.optim, name)
    rules = _rules({key: value}, name)
    refused = _torch_refuses(cls, {key: value})
    if refused:
        with pytest.raises(OptimizerError, match=f"'{key}' of {name}"):
            check(rules)
    else:
        assert check(rules) == []


@pytest.mark.parametrize("name", [n for n in TORCH if isinstance(_options(n).get("betas"), tuple)])
def test_betas_are_refused_exactly_where_torch_refuses_them(name: str) -> None:
    cls = getattr(torch.optim, name)
    for betas in itertools.product([-0.1, 0.0, 0.9, 0.999999, 1.0, 1.5], repeat=2):
        rules = _rules({"betas": list(betas)}, name)
        if _torch_refuses(cls, {"betas": betas}):
            with pytest.raises(OptimizerError, match="'betas'"):
                check(rules)
        else:
            assert check(rules) == [], betas


def test_sgd_nesterov_is_refused_exactly_where_torch_refuses_it() -> None:
    for momentum, dampening, nesterov in itertools.product([0.0, 0.5], [0.0, 0.1], [False, True]):
        settings = {"momentum": momentum, "dampening": dampening, "nesterov": nesterov}
        rules = _rules(settings, "SGD")
        if _torch_refuses(torch.optim.SGD, settings):
            with pytest.raises(OptimizerError, match="'nesterov' of SGD needs momentum > 0"):
                check(rules)
        else:
            assert check(rules) == [], settings


def test_a_rule_turning_nesterov_on_without_momentum_is_refused_at_its_option() -> None:
    text = ("version: 1\ndefaults: {lr: 0.1}\noptimizer: {type: SGD}\nrules:\n  - name: all\n    match: '*'\n"
            "    options: {nesterov: true}\n")
    with pytest.raises(OptimizerError) as caught:
        check(lrrules.loads(text, "r.yaml"))
    assert str(caught.value).startswith(f"r.yaml:7:{text.splitlines()[6].index('true') + 1}: ")


def _place(text: str, needle: str) -> str:
    before = text[: text.index(needle)]
    return f"{before.count(chr(10)) + 1}:{len(before) - before.rfind(chr(10))}"


@pytest.mark.parametrize("via", ["table", "torch"])
def test_option_errors_point_at_the_option_key(via: str) -> None:
    text = "version: 1\ndefaults:\n  lr: 0.1\n  momentum: 0.9\noptimizer: {type: AdamW}\n"
    rules = lrrules.loads(text, "r.yaml")
    with pytest.raises(OptimizerError, match="'momentum' \\(in defaults\\) is not an option of AdamW") as caught:
        check(rules) if via == "table" else check_optimizer(rules)
    assert str(caught.value).startswith(f"r.yaml:{_place(text, 'momentum')}: ")


def test_an_unknown_type_points_at_the_type_value() -> None:
    text = "version: 1\ndefaults: {lr: 0.1}\noptimizer:\n  type: AdamWW\n"
    rules = lrrules.loads(text, "r.yaml")
    assert check(rules) is None  # not in the table: torch decides
    with pytest.raises(OptimizerError, match="did you mean 'AdamW'") as caught:
        check_optimizer(rules)
    assert str(caught.value).startswith(f"r.yaml:{_place(text, 'AdamWW')}: ")


def test_timm_names_are_known_case_insensitively_and_unavailable_ones_give_a_note() -> None:
    assert known("Lamb") is not None and known("Lamb").options is not None  # type: ignore[union-attr]
    unavailable = [n for n, v in TIMM.items() if v == UNAVAILABLE]
    if unavailable:
        notes = check(_rules({}, unavailable[0]))
        assert notes and "not checked" in notes[0]


def _safetensors(path: Path, tensors: dict[str, list[int]]) -> None:
    header, offset = {}, 0
    for name, shape in tensors.items():
        size = 4 * (1 if not shape else __import__("math").prod(shape))
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))


# torch and timm made unimportable, as on a CI machine without them: the command must not need them.
_PROBE = ("import sys; sys.modules.update(torch=None, timm=None); from lrrules.cli import main; rc = main(sys.argv[1:]); "
          "print('TORCH' if sys.modules.get('torch') or sys.modules.get('timm') else 'NO-TORCH', rc)")


@pytest.mark.parametrize("command", ["check", "resolve", "explain", "diff"])
@pytest.mark.parametrize("optimizer", ["AdamW", "SGD", "lamb"])
def test_commands_against_a_checkpoint_never_import_torch(tmp_path: Path, command: str, optimizer: str) -> None:
    model = tmp_path / "model.safetensors"
    _safetensors(model, {"fc.weight": [3, 4], "fc.bias": [3], "conv.weight": [4, 3, 3, 3]})
    rules = tmp_path / "r.yaml"
    rules.write_text(f"version: 1\ndefaults: {{lr: 0.1}}\noptimizer: {{type: {optimizer}}}\n"
                     "rules:\n  - {name: all, match: '*'}\n")
    args = {"check": [str(rules)], "resolve": [str(rules)], "explain": [str(rules), "fc.*"],
            "diff": [str(rules), str(rules)]}[command]
    out = subprocess.run([sys.executable, "-c", _PROBE, command, *args, "--model", str(model)],
                         capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert out.stdout.split()[-2:] == ["NO-TORCH", "0"], out.stderr


def test_the_regenerated_table_is_the_table() -> None:
    import lrrules.optimizer_table as table

    text = Path(table.__file__).read_text()
    assert regenerated().split("\n", 1)[1] in text, "regenerate it: python tests/test_signatures.py"
    assert GENERATED_WITH["torch"] in regenerated().split("\n", 1)[0]


if __name__ == "__main__":
    print(regenerated())
