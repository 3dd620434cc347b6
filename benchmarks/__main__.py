"""The speed users feel, each figure beside its anchor in the same run; writes RESULTS.md and results.json.

    python -m benchmarks            # everything (make bench), a few minutes on 2 cores
    python -m benchmarks --quick    # small sizes, to check the script itself

Public API only (lrrules.load, RuleSet.resolve, lrrules.build, lrrules.resolve_names, the command
line), so it runs unchanged on any version of the library. No test asserts any of these numbers.
"""

from __future__ import annotations

import argparse
import compileall
import gc
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch
from timm.optim import create_optimizer_v2  # type: ignore[attr-defined]  # an implicit re-export
from torch import nn

import lrrules

from . import workloads
from .workloads import ROOT

HERE = Path(__file__).resolve().parent
CHECK_RULES = "examples/resnet18-discriminative.yaml"


def timed(fn: Callable[[], Any], budget: float = 3.0, most: int = 5) -> tuple[float, int]:
    """The median time (s) of ``fn`` over N runs, and N: runs are added while they fit in ``budget``
    seconds, at least one, at most ``most``."""
    times: list[float] = []
    while len(times) < most and (not times or sum(times) + times[-1] <= budget):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), len(times)


def walk(model: nn.Module) -> None:
    """The anchor: one pass over ``named_parameters()``."""
    for _ in model.named_parameters():
        pass


def row(workload: str, measure: str, ours: tuple[float, int], anchor_name: str, anchor: tuple[float, int],
        target: float | None, absolute: bool = False) -> dict[str, Any]:
    """One line of the table; ``absolute``: the target is a time in seconds, not a ratio."""
    ratio = ours[0] / anchor[0]
    met = None if target is None else (ours[0] if absolute else ratio) <= target
    print(f"  {workload}: {measure}: {ours[0] * 1e3:.1f} ms vs {anchor_name} {anchor[0] * 1e3:.1f} ms ({ratio:.2f}x)",
          flush=True)
    return {"workload": workload, "measure": measure, "lrrules_s": ours[0], "runs": ours[1], "anchor": anchor_name,
            "anchor_s": anchor[0], "anchor_runs": anchor[1], "ratio": ratio, "target": target,
            "absolute": absolute, "met": met}


def unfit(rules: lrrules.RuleSet, plan: Any) -> str | None:
    """Why a rule file does not fit a model (a parameter unmatched or claimed twice, a rule that claims
    nothing; an unused modifier is fine), or None."""
    unused = sorted(set(plan.to_dict()["unused_rules"]) & {rule.name for rule in rules.rules})
    return plan.problems()[0] if not plan.ok else f"rule '{unused[0]}' matches nothing" if unused else None


def resolve_section(quick: bool) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """Each shipped rule file that fits each workload: ``RuleSet.resolve`` beside ``named_parameters()``
    (timed again before each file, so both see the same load); and workload -> file -> "measured" or why not."""
    loaded = {spec: lrrules.load(ROOT / spec if not spec.startswith("lrrules:") else spec)
              for spec in workloads.rule_files()}
    rows: list[dict[str, Any]] = []
    fit: dict[str, dict[str, str]] = {}
    for label, (make, make_twin) in workloads.meta_workloads(quick).items():
        started = time.perf_counter()
        model = make()
        twin = make_twin() if make_twin else model
        count = sum(1 for _ in model.named_parameters())
        name = f"{label} ({count:,} tensors)"
        print(f"{name}, built in {time.perf_counter() - started:.1f} s", flush=True)
        fit[label] = {}
        for spec, rules in loaded.items():
            try:
                why = unfit(rules, lrrules.resolve(rules, twin))
            except lrrules.LrrulesError as exc:
                why = str(exc).splitlines()[0].split(": ", 2)[-1]
            why = (why or "measured").split("; ")[0]
            fit[label][spec] = why if len(why) < 60 else why[:57] + "..."
            if why != "measured":
                continue
            anchor = timed(lambda: walk(model))
            ours = timed(lambda: lrrules.resolve(rules, model))
            target = 3.0 if label == "deepseek-v3" else None
            rows.append(row(name, f"resolve `{spec}`", ours, "`named_parameters()`", anchor, target))
        del model, twin
        gc.collect()
    return rows, fit


def settings(optimizer: torch.optim.Optimizer) -> dict[int, tuple[float, float]]:
    return {id(p): (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}


def build_section() -> list[dict[str, Any]]:
    """``lrrules.build`` with lrrules:no-decay beside timm's ``create_optimizer_v2`` (the same groups:
    no decay on 1-D tensors, biases and ``no_weight_decay()``), on real CPU tensors."""
    rules = lrrules.load("lrrules:no-decay")  # lr 0.001, weight decay 0.05
    rows = []
    for label in workloads.TIMM_MODELS:
        model = workloads.timm_cpu(label)

        def theirs() -> torch.optim.Optimizer:
            return create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)

        def ours() -> torch.optim.Optimizer:
            return lrrules.build(rules, model).optimizer

        same = settings(theirs()) == settings(ours())
        measure = "`lrrules.build` lrrules:no-decay" + ("" if same else " (**groups differ from timm's**)")
        rows.append(row(f"{label} (CPU)", measure, timed(ours), "timm `create_optimizer_v2`", timed(theirs), 1.1))
        del model
        gc.collect()
    return rows


def command_section(repeat: int) -> list[dict[str, Any]]:
    """``lrrules check`` in a fresh process, beside ``python -c pass``; the model cache in a scratch folder."""
    compileall.compile_dir(str(Path(lrrules.__file__).parent), quiet=1)  # as an installed package has it
    with tempfile.TemporaryDirectory() as cache:
        env = os.environ | {"XDG_CACHE_HOME": cache}

        def run(*args: str) -> Callable[[], None]:
            def go() -> None:
                done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True)
                if done.returncode not in (0, 1):
                    raise RuntimeError(f"{args} failed: {done.stderr[-2000:]}")
            return go

        with_model = ("-m", "lrrules", "check", CHECK_RULES, "--model", "resnet50")
        run(*with_model)()  # fills the cache
        anchor = timed(run("-c", "pass"), budget=60, most=repeat)
        return [row("resnet50", f"second `lrrules check {CHECK_RULES} --model resnet50` (cached)",
                    timed(run(*with_model), budget=60, most=repeat), "`python -c pass`", anchor, 0.2, absolute=True),
                row("-", f"`lrrules check {CHECK_RULES}` (no model)",
                    timed(run("-m", "lrrules", "check", CHECK_RULES), budget=60, most=repeat),
                    "`python -c pass`", anchor, 0.2, absolute=True)]


def growth_section(quick: bool) -> list[dict[str, Any]]:
    """``lrrules.resolve_names`` on synthetic names: more tensors at 10 rules, more rules at 40k tensors.
    Loading the file and a first resolve of 100 names (what compiles it) are timed apart, once.
    A point is skipped when ten times the previous one's time would pass 90 s (a cliff, reported)."""
    tensor_counts = [1_000, 10_000] if quick else [1_000, 10_000, 100_000, 1_000_000]
    rule_counts = [10, 100] if quick else [10, 100, 1_000, 10_000]
    points = [(t, 10) for t in tensor_counts] + [(4_000 if quick else 40_000, r) for r in rule_counts]
    rows, last = [], 0.0
    for i, (tensors, count) in enumerate(points):
        if i == len(tensor_counts):
            last = 0.0  # the second curve starts afresh
        if last * 10 > 90:
            rows.append({"tensors": tensors, "rules": count, "skipped": f"the previous point took {last:.0f} s"})
            continue
        names, text = workloads.synthetic_names(tensors), workloads.synthetic_rules(count)
        start = time.perf_counter()
        rules = lrrules.loads(text)
        lrrules.resolve_names(rules, names[:100])
        prepared = time.perf_counter() - start
        took, runs = timed(lambda: lrrules.resolve_names(rules, names))
        last = took
        rows.append({"tensors": tensors, "rules": count, "load_s": prepared, "resolve_s": took, "runs": runs,
                     "us_per_tensor": took / tensors * 1e6})
        print(f"  growth: {tensors:>9,} tensors {count:>6,} rules: {took * 1e3:9.1f} ms, "
              f"{took / tensors * 1e6:.1f} µs per tensor (load {prepared * 1e3:.0f} ms)", flush=True)
    return rows


def machine() -> dict[str, Any]:
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": platform.processor() or platform.machine(),
            "nproc": os.cpu_count(), "load_before": os.getloadavg(), "python": platform.python_version(),
            "torch": torch.__version__, "timm": timm.__version__, "lrrules": lrrules.__version__}


def seconds(s: float) -> str:
    return f"{s:.2f} s" if s >= 1 else f"{s * 1e3:.1f} ms"


def report(results: dict[str, Any]) -> str:
    m = results["machine"]
    load = " / ".join(f"{x:.1f}" for x in m["load_before"])
    after = " / ".join(f"{x:.1f}" for x in m.get("load_after", m["load_before"]))
    out = ["# lrrules benchmarks", "",
           f"`make bench` (`python -m benchmarks`) on {m['date']}: {m['cpu']}, nproc {m['nproc']}, load average "
           f"(1/5/15 min) {load} before and {after} after; Python {m['python']}, torch {m['torch']}, "
           f"timm {m['timm']}, lrrules {m['lrrules']}. {results.get('note', '')}".rstrip(), "",
           "Each figure is the median of N runs (N in brackets: as many as fit in about 3 s, 1 to 5) beside its "
           "anchor measured in the same run. Models on the meta device except for `build`, which needs real "
           "tensors (pretrained=False); nothing is downloaded.", "",
           "| workload | measure | lrrules | anchor | ratio | target | met? |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results["rows"]:
        target = "-" if r["target"] is None else (f"< {r['target']} s" if r["absolute"] else f"<= {r['target']}x")
        met = "-" if r["met"] is None else ("yes" if r["met"] else "**no**")
        out.append(f"| {r['workload']} | {r['measure']} | {seconds(r['lrrules_s'])} ({r['runs']}) | {r['anchor']} "
                   f"{seconds(r['anchor_s'])} ({r['anchor_runs']}) | {r['ratio']:.2f}x | {target} | {met} |")
    fit = results["fit"]
    out += ["", "Which rule file was measured on which workload, or why not: a file is measured where every "
            "parameter is claimed once and every rule claims some (decided by resolving it once; for DeepSeek-V3 "
            "on a 5-layer, 4-expert twin with the same names).", "",
            "| rule file | " + " | ".join(fit) + " |", "| --- " * (len(fit) + 1) + "|"]
    for spec in next(iter(fit.values())):
        out.append(f"| `{spec}` | " + " | ".join(fit[label][spec] for label in fit) + " |")
    out += ["", "## Growth", "",
            "`lrrules.resolve_names` on synthetic (name, shape) pairs `blocks.B.{fc,norm}.{weight,bias}` and rule "
            "files of N rules, each claiming one block (half globs, half regexes), a fallback and a no-decay "
            "modifier. Time per tensor should stay flat along both curves (reported, not asserted). Load: "
            "`lrrules.loads` and a first resolve of 100 names (which compiles the file), once.", "",
            "| tensors | rules | load | resolve | µs per tensor |", "| --- | --- | --- | --- | --- |"]
    for g in results["growth"]:
        if "skipped" in g:
            out.append(f"| {g['tensors']:,} | {g['rules']:,} | - | skipped: {g['skipped']} | - |")
        else:
            out.append(f"| {g['tensors']:,} | {g['rules']:,} | {seconds(g['load_s'])} | {seconds(g['resolve_s'])} "
                       f"({g['runs']}) | {g['us_per_tensor']:.1f} |")
    return "\n".join(out) + "\n"


def dump(results: dict[str, Any]) -> str:
    """JSON with one line per row, so that two runs diff row by row."""
    def value(v: Any) -> str:
        return "[\n  " + ",\n  ".join(map(json.dumps, v)) + "\n]" if isinstance(v, list) else json.dumps(v)
    return "{\n" + ",\n".join(f"{json.dumps(k)}: {value(v)}" for k, v in results.items()) + "\n}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    parser.add_argument("--out", default=str(HERE), help="where RESULTS.md and results.json go")
    parser.add_argument("--note", default="", help="a sentence for RESULTS.md about the run (a busy machine)")
    parser.add_argument("--report-only", action="store_true", help="rewrite RESULTS.md from results.json")
    args = parser.parse_args()
    out = Path(args.out)
    if args.report_only:
        (out / "RESULTS.md").write_text(report(json.loads((out / "results.json").read_text())))
        return
    logging.getLogger("timm").setLevel(logging.ERROR)
    results: dict[str, Any] = {"machine": machine(), "note": args.note}
    print("command line", flush=True)
    rows = command_section(2 if args.quick else 5)
    print("resolve", flush=True)
    resolved, results["fit"] = resolve_section(args.quick)
    print("build", flush=True)
    results["rows"] = resolved + build_section() + rows
    print("growth", flush=True)
    results["growth"] = growth_section(args.quick)
    results["machine"]["load_after"] = os.getloadavg()
    (out / "results.json").write_text(dump(results))
    (out / "RESULTS.md").write_text(report(results))
    print(f"wrote {out / 'RESULTS.md'} and {out / 'results.json'}")


if __name__ == "__main__":
    main()
