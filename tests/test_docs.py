"""The README and docs/ stay true: every lrrules command in a shell block runs as shown, and every
sample output marked `<!-- output of: COMMAND -->` is what COMMAND prints."""

from __future__ import annotations

import glob
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from lrrules.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for block in re.findall(r"```(?:sh|bash|shell)\n(.*?)```", doc.read_text(), re.S):
            for line in block.splitlines():
                words = shlex.split(line, comments=True)
                if words and words[0].endswith("lrrules"):
                    found.append((doc.name, line))
    return found


def _outputs() -> list[tuple[str, str, str]]:
    found = []
    for doc in DOCS:
        for command, shown in re.findall(r"<!-- output of: (.*?) -->\n```text\n(.*?)```", doc.read_text(), re.S):
            found.append((doc.name, command, shown))
    return found


def _argv(line: str) -> list[str]:
    words = shlex.split(line, comments=True)[1:]
    expanded: list[str] = []
    for word in words:  # the shell's globbing, as the line would get it
        expanded += sorted(glob.glob(word, root_dir=ROOT)) if "*" in word and not word.startswith(("'", "-")) \
            and glob.glob(word, root_dir=ROOT) and "/" in word else [word]
    return expanded


COMMANDS = _commands()
OUTPUTS = _outputs()


def test_the_docs_show_commands_and_outputs() -> None:
    assert len(COMMANDS) >= 8 and len(OUTPUTS) >= 2


@pytest.mark.parametrize(("doc", "line"), COMMANDS, ids=[f"{d}:{line[:60]}" for d, line in COMMANDS])
def test_each_command_shown_runs(doc: str, line: str, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)
    argv = _argv(line)
    code = main(argv)
    _, err = capsys.readouterr()
    expected = (0,) if argv[0] in ("check", "params", "init", "schema", "explain", "resolve") else (0, 1)
    assert code in expected, f"{doc}: `{line}` exited {code}: {err}"


@pytest.mark.parametrize(("doc", "command", "shown"), OUTPUTS, ids=[f"{d}:{c[:60]}" for d, c, _ in OUTPUTS])
def test_each_sample_output_is_what_its_command_prints(doc: str, command: str, shown: str,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    main(_argv(command))
    out, _ = capsys.readouterr()
    assert out.rstrip("\n") == shown.rstrip("\n"), f"{doc}: the sample of `{command}` is out of date"


def _finetune_module() -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location("finetune", ROOT / "examples" / "finetune" / "finetune.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_quotes_the_finetune_results_the_example_wrote() -> None:
    # The figures are re-derived from the example's own output file, never measured here: the table
    # is what its report() makes of results.json, the run time is the `seconds` it recorded.
    import json

    finetune: Any = _finetune_module()
    results = json.loads((ROOT / "examples" / "finetune" / "results" / "results.json").read_text())
    written = finetune.report(results)
    assert (ROOT / "examples" / "finetune" / "results" / "RESULTS.md").read_text() == written
    rows = [line for line in written.splitlines() if line.startswith("|")]
    readme = (ROOT / "README.md").read_text()
    assert "\n".join(rows) in readme, "README.md's fine-tuning table is not the one results.json gives"
    took = re.search(r"tracked results took\s+(\d+) s", readme)
    assert took and int(took.group(1)) == round(results["seconds"]), "README.md's run time is not results.json's"
