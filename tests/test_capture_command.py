"""lrrules capture SCRIPT:FUNC and the verification both commands end with: the comparison is
printed, and a difference is exit 1."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from lrrules.importers import command

SCRIPT = '''
import torch

def optimizer(model):
    head = [p for n, p in model.named_parameters() if n.startswith("fc.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith(("fc.", "conv1."))]
    return torch.optim.SGD([{"params": head, "lr": 0.1}, {"params": rest}], lr=0.01, momentum=0.9)
'''


def parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_capture_arguments(parser)
    return parser.parse_args(list(argv))


def test_capture_writes_a_verified_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "rules.yaml"
    code = command.run_capture(parsed(f"{script}:optimizer", "--model", "resnet18", "--num-classes", "2", "-o", str(out)))
    err = capsys.readouterr().err
    assert code == 0, err
    assert "62 of 62 tensors the same" in err
    text = out.read_text()
    assert "{role: head}, lr: 0.1}" in text and "freeze: true" in text and "momentum: 0.9" in text


def test_a_difference_is_printed_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import timm
    import torch

    model = timm.create_model("resnet18", pretrained=False, num_classes=2)
    original = torch.optim.SGD(model.parameters(), lr=0.01)
    wrong = "version: 1\ndefaults: {lr: 0.01}\noptimizer: {type: SGD}\nrules:\n  - {name: all, match: '*'}\n" \
            "modifiers:\n  - {name: faster-head, match: 'fc.*', lr_mult: 2}\n"
    args = parsed("x.py:f", "--model", "resnet18", "--num-classes", "2", "-o", str(tmp_path / "out.yaml"))
    assert command._finish(wrong, original, model, args) == 1
    err = capsys.readouterr().err
    assert "differs: fc.weight: lr 0.01 != 0.02" in err and "60 of 62 tensors the same" in err


def test_a_script_without_the_function_is_a_usage_error(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    with pytest.raises(Exception, match="has no function 'missing'"):
        command.run_capture(parsed(f"{script}:missing", "--model", "resnet18"))
