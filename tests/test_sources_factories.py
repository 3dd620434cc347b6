"""A user's ``--model package.module:factory`` that fails in any way Python allows (a ``BaseException``
that is not an ``Exception``, at import or at the call) ends as ``lrrules: error:`` naming the
factory, exit 2, no traceback; and a factory that fails is called once, never again on the CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lrrules.cli import main

PLAIN = "version: 1\ndefaults: {lr: 1.0}\nrules:\n  - {name: body, fallback: true}\n"

#: What the factory's body raises, the class name the message must carry, and how many times it runs:
#: twice only where the meta device is what failed (it is tried again on the CPU, as library models are).
RAISED = [
    ("raise GeneratorExit('closed')", "GeneratorExit", 1),
    ("class Stop(BaseException): pass\n    raise Stop('mine')", "Stop", 1),
    ("raise StopIteration", "StopIteration", 1),
    ("raise ValueError('bad size')", "ValueError", 1),
    ("raise KeyError('missing metadata')", "KeyError", 1),                # "meta" inside a word is not the device
    ("raise TypeError('metaclass conflict')", "TypeError", 1),
    ("raise NotImplementedError('subclass it')", "NotImplementedError", 1),
    ("raise RuntimeError('Tensor.item() cannot be called on meta tensors')", "RuntimeError", 2),
    ("raise NotImplementedError('no meta kernel')", "NotImplementedError", 2),
]


def factory_module(folder: Path, name: str, body: str) -> None:
    # Each call appends a line to calls.txt beside it: how many times the factory ran.
    (folder / f"{name}.py").write_text(
        "from pathlib import Path\n"
        "def make(**kw):\n"
        "    with open(Path(__file__).with_name('calls.txt'), 'a') as f:\n"
        "        f.write('call\\n')\n"
        f"    {body}\n")


@pytest.mark.parametrize(("body", "kind", "calls"), RAISED, ids=[f"{k}-{i}" for i, (_, k, _) in enumerate(RAISED)])
def test_a_factory_raising_anything_is_an_error_naming_it_and_runs_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        body: str, kind: str, calls: int) -> None:
    name = f"failing_{abs(hash(body))}"
    factory_module(tmp_path, name, body)
    (tmp_path / "rules.yaml").write_text(PLAIN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, name, raising=False)
    code = main(["check", "rules.yaml", "--model", f"{name}:make"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"lrrules: error: {name}:make: the factory failed: {kind}")
    assert "Traceback" not in err
    assert (tmp_path / "calls.txt").read_text().count("call") == calls


@pytest.mark.parametrize("top", ["raise GeneratorExit", "class E(BaseException): pass\nraise E('at import')",
                                 "raise ValueError('at import')", "import sys\nsys.exit(3)"])
def test_a_factory_module_failing_at_import_is_an_error_naming_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, top: str) -> None:
    name = f"broken_import_{abs(hash(top))}"
    (tmp_path / f"{name}.py").write_text(top + "\ndef make(**kw):\n    pass\n")
    (tmp_path / "rules.yaml").write_text(PLAIN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, name, raising=False)
    code = main(["check", "rules.yaml", "--model", f"{name}:make"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"lrrules: error: {name}:make: importing '{name}' failed")


def test_a_factory_built_on_the_cpu_because_meta_cannot_still_works(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # A constructor that reads its tensors' values fails on the meta device and is built on the CPU.
    (tmp_path / "reads_values.py").write_text(
        "import torch\ndef make(**kw):\n    m = torch.nn.Linear(2, 3)\n    m.weight.sum().item()\n    return m\n")
    (tmp_path / "rules.yaml").write_text(PLAIN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "reads_values", raising=False)
    assert main(["check", "rules.yaml", "--model", "reads_values:make"]) == 0


@pytest.mark.slow
def test_generator_exit_from_a_factory_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    factory_module(tmp_path, "closing", "raise GeneratorExit")
    (tmp_path / "rules.yaml").write_text(PLAIN)
    done = subprocess.run([sys.executable, "-m", "lrrules", "check", "rules.yaml", "--model", "closing:make"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("lrrules: error: closing:make: the factory failed: GeneratorExit")
    assert "Traceback" not in done.stderr
    assert (tmp_path / "calls.txt").read_text().count("call") == 1
