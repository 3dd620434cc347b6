"""Optimizer errors keep their place as data (issue 22): ``check --format github`` puts them on their
line, JSON gives the line, and the library error has ``path``/``line``/``col``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lrrules
from lrrules.cli import main
from lrrules.errors import OptimizerError

ONE = """version: 1
defaults: {lr: 0.1}
optimizer: {type: SGD}
rules:
  - {name: all, match: "*", options: {momentun: 0.9}}
"""
SEVERAL = """version: 1
defaults: {lr: 0.1}
optimizers:
  fast: {type: SGD, momentun: 0.9}
rules:
  - {name: all, match: "*", optimizer: fast}
"""
TYPO = """version: 1
defaults: {lr: 0.1}
optimizer: {type: AdamWW}
rules:
  - {name: all, match: "*"}
"""


def _place(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of ``needle`` in ``text``, found independently of lrrules."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(needle)


@pytest.mark.parametrize(("text", "needle"), [(ONE, "momentun"), (SEVERAL, "momentun"), (TYPO, "AdamWW")])
def test_an_optimizer_error_lands_on_its_line_in_github_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 text: str, needle: str) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(text)
    line, _ = _place(text, needle)
    assert main(["check", str(rules), "--model", "resnet18", "--no-cache", "--format", "github"]) == 2
    out = capsys.readouterr().out
    assert out.startswith("::error ") and f",line={line}," in out, out
    assert main(["check", str(rules), "--model", "resnet18", "--no-cache", "--format", "json"]) == 2
    (found,) = json.loads(capsys.readouterr().out)
    assert found["line"] == line and found["col"] and found["file"] == str(rules)
    assert needle in found["message"] and not found["message"].startswith(str(rules))


def test_the_library_error_keeps_path_line_and_col(tmp_path: Path) -> None:
    import torch

    rules = tmp_path / "r.yaml"
    rules.write_text(ONE)
    with pytest.raises(OptimizerError) as caught:
        lrrules.build(str(rules), torch.nn.Linear(2, 2))
    line, _ = _place(ONE, "momentun")
    exc = caught.value
    assert (exc.path, exc.line) == (str(rules), line) and exc.col > 0
    assert str(exc) == f"{rules}:{exc.line}:{exc.col}: {exc.message}"


@pytest.mark.parametrize(("text", "needle"), [
    (TYPO, "AdamWW"),
    (SEVERAL.replace("type: SGD, momentun: 0.9", "type: Muonn"), "Muonn"),
])
def test_check_without_a_model_refuses_an_optimizer_type_that_names_none(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                        text: str, needle: str) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(text)
    assert main(["check", str(rules)]) == 2
    err = capsys.readouterr().err
    line, col = _place(text, needle)
    assert err.startswith(f"{rules}:{line}:{col}: optimizer type '{needle}' names no optimizer (did you mean"), err


def test_every_torch_optimizer_name_and_every_shipped_file_passes_the_name_check() -> None:
    import torch

    from lrrules.signatures import check_names

    names = [n for n, v in vars(torch.optim).items()
             if isinstance(v, type) and issubclass(v, torch.optim.Optimizer) and v is not torch.optim.Optimizer]
    for name in names:  # torch's own list, not the table's
        check_names(lrrules.loads(f"version: 1\ndefaults: {{lr: 0.1}}\noptimizer: {{type: {name}}}\nrules: []\n"))
    shipped = [*sorted(Path("examples").glob("*.yaml")), *sorted(Path("examples").glob("*.json"))]
    for path in shipped:
        check_names(lrrules.load(str(path)))
    for preset in ("muon", "mup", "no-decay", "no-decay-1d", "llrd", "lora-plus"):
        check_names(lrrules.load(f"lrrules:{preset}"))
