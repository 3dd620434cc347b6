"""The import and capture commands docs/importers.md shows, on the configs of examples/importers/,
each reproduce the peer's own groups: exit 0 and every tensor the same (tests/test_docs.py only
checks that they run)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from lrrules.cli import main

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = re.findall(r"```sh\n(.*?)```", (ROOT / "docs" / "importers.md").read_text(), re.S)
LINES = [line for block in BLOCKS for line in block.splitlines() if line.startswith("lrrules ")]


def test_the_docs_show_every_format_and_capture() -> None:
    shown = {shlex.split(line)[1] if shlex.split(line)[1] == "capture" else shlex.split(line)[2] for line in LINES}
    assert shown == {"timm", "mmengine", "regex-list", "hf", "axolotl", "capture"}


@pytest.mark.slow
@pytest.mark.parametrize("line", LINES, ids=[line.split()[2].split("/")[-1] for line in LINES])
def test_each_shown_command_reproduces_the_peers_groups(line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)
    code = main([*shlex.split(line)[1:], "-o", str(tmp_path / "rules.yaml")])
    err = capsys.readouterr().err
    total = re.search(r"(\d+) of (\d+) tensors the same", err)
    assert code == 0 and total and total.group(1) == total.group(2) and int(total.group(2)) > 10, err
    written = yaml.safe_load((tmp_path / "rules.yaml").read_text())
    assert written["version"] == 1 and written["rules"]


@pytest.mark.slow
def test_the_rule_file_on_stdout_is_only_the_rule_file_whatever_the_peer_prints(tmp_path: Path) -> None:
    """transformers imports DeepSpeed, which prints a line on stdout: `lrrules import hf ... > rules.yaml`
    must still be a rule file lrrules loads."""
    import subprocess
    import sys

    import lrrules

    [line] = [line for line in LINES if shlex.split(line)[2] == "hf"]
    done = subprocess.run([sys.executable, "-m", "lrrules", *shlex.split(line)[1:]], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (tmp_path / "rules.yaml").write_text(done.stdout)
    assert lrrules.load(str(tmp_path / "rules.yaml")).version == 1


@pytest.mark.parametrize(("fmt", "text", "said"), [
    ("hf", "learning_rate: [1\nweight_decay: {\n", ":2:"),        # not YAML: placed, not a traceback
    ("regex-list", "- just\n- a list\n", "expected a mapping"),
    ("axolotl", "base_model: x\n", "neither loraplus_lr_ratio nor lr_groups"),
    ("timm", "--opt adamw --lr 1e-3 --layer-decay 0.75x\n", "layer_decay is '0.75x'"),
])
def test_a_config_the_importer_cannot_read_is_exit_2_saying_why(fmt: str, text: str, said: str, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    assert main(["import", fmt, str(config), "--model", "resnet18"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lrrules: error: {config}") and said in err and "Traceback" not in err
