"""The README and docs/ stay true: every lrrules command in a shell block runs as shown, every
sample output marked `<!-- output of: COMMAND -->` (or `stderr of:`) is what COMMAND prints, every
text block of README.md and docs/cli.md is such a sample, and the fine-tuning figures are the ones
the example wrote."""

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


#: A sample's marker: `<!-- output of: COMMAND -->` (what it prints on stdout) or `<!-- stderr of:
#: COMMAND -->` (on stderr), right above a ```text block. A ```yaml or ```json block under `<!-- file:
#: NAME -->` is a file the doc's samples may name: they run in a folder holding those files.
MARKER = re.compile(r"<!-- (output|stderr) of: (.*?) -->\n```text\n(.*?)```", re.S)
FILE = re.compile(r"<!-- file: (\S+) -->\n```(?:yaml|json)\n(.*?)```", re.S)


def _outputs() -> list[tuple[str, str, str, str]]:
    found = []
    for doc in DOCS:
        for stream, command, shown in MARKER.findall(doc.read_text()):
            found.append((doc.name, stream, command, shown))
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
    assert len(COMMANDS) >= 8 and len(OUTPUTS) >= 5


@pytest.mark.parametrize("doc", ["README.md", "cli.md"])
def test_every_text_block_is_a_sample_whose_command_is_named(doc: str) -> None:
    # A ```text block is output; each says which command prints it, so the test below compares it.
    text = next(d for d in DOCS if d.name == doc).read_text()
    for match in re.finditer(r"```text\n", text):
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        assert re.fullmatch(r"<!-- ((output|stderr) of: .*|not an output: .*) -->", before), \
            f"{doc}: the text block at offset {match.start()} names no command (<!-- output of: ... -->)"


@pytest.mark.parametrize(("doc", "line"), COMMANDS, ids=[f"{d}:{line[:60]}" for d, line in COMMANDS])
def test_each_command_shown_runs(doc: str, line: str, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)
    argv = _argv(line)
    code = main(argv)
    _, err = capsys.readouterr()
    expected = (0,) if argv[0] in ("check", "params", "init", "schema", "explain", "resolve") else (0, 1)
    assert code in expected, f"{doc}: `{line}` exited {code}: {err}"


@pytest.mark.parametrize(("doc", "stream", "command", "shown"), OUTPUTS,
                         ids=[f"{d}:{c[:60]}" for d, _, c, _ in OUTPUTS])
def test_each_sample_output_is_what_its_command_prints(doc: str, stream: str, command: str, shown: str,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    files = dict(FILE.findall(next(d for d in DOCS if d.name == doc).read_text()))
    argv = _argv(command)
    named = {word: files[word] for word in argv if word in files}
    for name, body in named.items():  # the doc's files, written where the command runs
        (tmp_path / name).write_text(body)
    monkeypatch.chdir(tmp_path if named else ROOT)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    main(argv)
    out, err = capsys.readouterr()
    printed = out if stream == "output" else err
    assert printed.rstrip("\n") == shown.rstrip("\n"), f"{doc}: the sample of `{command}` is out of date"


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
