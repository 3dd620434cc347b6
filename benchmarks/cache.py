"""Issue 14's command-line figures: the second run of a command on the same model, from the model
cache, beside the first (which builds the model) and the floors (``python -c pass``, ``import timm``).

    python -m benchmarks.cache     # this section alone, printed
"""

from __future__ import annotations

import compileall
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import lrrules

from .__main__ import run_measured

RULES = "examples/resnet18-discriminative.yaml"


def command_line_cache(quick: bool) -> list[dict[str, Any]]:
    repeat = 2 if quick else 3
    # An installed lrrules has its bytecode (pip compiles it); a checkout run with
    # PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module on every run and time that.
    compileall.compile_dir(str(Path(lrrules.__file__).parent), quiet=1)
    rows = []
    before = os.environ.get("XDG_CACHE_HOME")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["XDG_CACHE_HOME"] = cache  # a fresh cache, not the user's
        try:
            lr = [sys.executable, "-m", "lrrules"]
            model = ["--model", "resnet18", "--num-classes", "2"]
            cases = [
                ("python -c pass (floor)", [sys.executable, "-c", "pass"]),
                ("python -c 'import timm' (floor)", [sys.executable, "-c", "import timm"]),
                ("python -c 'import lrrules.language' (the rule language: pydantic and its models)",
                 [sys.executable, "-c", "import lrrules.language"]),
                ("lrrules resolve, --no-cache (builds resnet18)", [*lr, "resolve", RULES, *model, "--no-cache"]),
                ("lrrules resolve, second run (cached)", [*lr, "resolve", RULES, *model]),
                ("lrrules explain 'fc.*', second run (cached)", [*lr, "explain", RULES, "fc.*", *model]),
                ("lrrules check, second run (cached)", [*lr, "check", RULES, *model]),
            ]
            run_measured([*lr, "check", RULES, *model], 1)  # fills the cache (the model, the optimizer check)
            for label, cmd in cases:
                wall, rss = run_measured(cmd, repeat)
                rows.append({"command": label, "wall_s": wall, "peak_mib": rss / 1024})
                print(f"  {label}: {wall:.2f} s, {rss / 1024:.0f} MiB", flush=True)
        finally:
            if before is None:
                os.environ.pop("XDG_CACHE_HOME", None)
            else:
                os.environ["XDG_CACHE_HOME"] = before
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    out = ["## 6. The model cache (issue 14): a second command on the same model", "",
           "| command | wall (s) | peak memory (MiB) |", "| --- | --- | --- |"]
    out += [f"| {r['command']} | {r['wall_s']:.2f} | {r['peak_mib']:.0f} |" for r in rows]
    hits = [r for r in rows if "second run" in r["command"]]
    out += ["", "Target: a second `check`/`resolve`/`explain` under 0.5 s: " + ", ".join(
        f"{r['command'].split(',')[0].removeprefix('lrrules ')} {r['wall_s']:.2f} s "
        f"(**{'met' if r['wall_s'] < 0.5 else 'missed'}**)" for r in hits) + ".",
        "`check` with a model also remembers that the file's optimizer and options passed their check "
        "(keyed by the whole rule set and the library versions), so an unchanged file imports no torch either.", ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(report(command_line_cache(quick="--quick" in sys.argv[1:])))
