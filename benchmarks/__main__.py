"""Every comparison in one process run, side by side; writes benchmarks/RESULTS.md and results.json.

    python -m benchmarks            # everything (a few minutes on 2 cores)
    python -m benchmarks --quick    # smaller sizes, to check the script itself

No number here is asserted by a test: this is where speed is shown. Each timing is the best of a few
runs, taken in this one process, next to its floor or its anchor, so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

import lrrules

from . import headless
from .timing import best

HERE = Path(__file__).parent
ROOT = HERE.parent


# --- 1. resolution scaling -----------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)


def synthetic(tensors: int, stages: int = 8) -> nn.Module:
    """A deep stack of small blocks on the meta device: ``stages.S.blocks.B.{fc,norm}.{weight,bias}``."""
    model = nn.Module()
    with torch.device("meta"):
        model.stages = nn.ModuleList(nn.Module() for _ in range(stages))
        for stage in model.stages:
            stage.blocks = nn.ModuleList(Block() for _ in range(tensors // 4 // stages))
    return model


def scaling_rules(count: int) -> lrrules.RuleSet:
    """``count`` claiming rules, half globs and half regexes with captures, each on its own block,
    a fallback for the rest, and modifiers of every kind (ndim, module class, unanchored regex)."""
    lines = ["version: 1", "defaults: {lr: 0.1, weight_decay: 0.05}", "layers: {by: module, level: 2}", "rules:"]
    for i in range(count):
        stage, block = i % 8, i // 8
        if i % 2:
            lines.append(f"  - {{name: r{i}, match: {{regex: '^stages\\.{stage}\\.blocks\\.{block}\\."
                         f"(?P<part>fc|norm)\\.'}}, lr_mult: '0.9 ** depth'}}")
        else:
            lines.append(f"  - {{name: r{i}, match: 'stages.{stage}.blocks.{block}.*', lr_mult: '0.8 ** depth'}}")
    lines += [
        "  - {name: rest, fallback: true, lr_mult: '0.7 ** depth'}",
        "modifiers:",
        "  - {name: no-decay, match: {ndim: 1}, weight_decay: 0}",
        "  - {name: norms, match: {module: '*Norm*'}, lr_mult: 0.5}",
        "  - {name: fc-bias, match: {regex: '\\.fc\\.bias$'}, weight_decay_mult: 0.5}",
    ]
    return lrrules.loads("\n".join(lines) + "\n")


def floor(model: nn.Module) -> None:
    for _ in model.named_parameters():
        pass


def scaling(sizes: list[int], rule_counts: list[int]) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        model = synthetic(size)
        floor(model)
        repeat = 3 if size <= 10_000 else 2
        base = best(lambda: floor(model), repeat)
        for count in rule_counts:
            rules = scaling_rules(count)
            plan = rules.resolve(model)
            assert plan.ok, plan.problems()[:3]
            took = best(lambda: rules.resolve(model), repeat)
            rows.append({"tensors": len(plan.params), "rules": count, "resolve_ms": took * 1e3,
                         "us_per_tensor": took / len(plan.params) * 1e6, "floor_ms": base * 1e3,
                         "ratio_to_floor": took / base, "groups": len(plan.groups)})
            print(f"  scaling {rows[-1]['tensors']:>7} tensors {count:>5} rules: {took * 1e3:8.1f} ms "
                  f"({took / base:.1f}x the floor)", flush=True)
    return rows


def resolve_memory(count: int) -> dict[str, Any]:
    """The peak memory (tracemalloc) of ``lrrules.resolve_names`` on ``count`` (name, shape) pairs,
    beside the memory of the list of pairs itself: what resolving a huge checkpoint's names costs."""
    import tracemalloc

    rules = lrrules.loads("version: 1\ndefaults: {lr: 0.1, weight_decay: 0.05}\nrules:\n"
                          "  - {name: blocks, match: 'blocks.*', lr_mult: '0.5 ** ndim'}\n"
                          "  - {name: rest, fallback: true}\n"
                          "modifiers:\n  - {name: no-decay, match: {ndim: 1}, weight_decay: 0}\n")
    gc.collect()
    tracemalloc.start()
    pairs = [(f"blocks.{i // 4}.{('fc.weight', 'fc.bias', 'norm.weight', 'norm.bias')[i % 4]}",
              (4, 4) if i % 4 == 0 else (4,)) for i in range(count)]
    listed = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    plan = lrrules.resolve_names(rules, pairs)
    peak = tracemalloc.get_traced_memory()[1] - listed
    tracemalloc.stop()
    assert plan.ok
    print(f"  resolve_names on {count:,} names: peak {peak / 2**20:.0f} MiB, the name list {listed / 2**20:.0f} MiB "
          f"({peak / listed:.2f}x)", flush=True)
    return {"tensors": count, "list_mib": listed / 2**20, "peak_mib": peak / 2**20, "ratio": peak / listed}


# --- 2. against the anchors ---------------------------------------------------------------------


def timm_layer_decay_rules(no_weight_decay: list[str]) -> lrrules.RuleSet:
    return lrrules.RuleSet.model_validate({
        "version": 1, "defaults": {"lr": 1e-3, "weight_decay": 0.05}, "layers": {"by": "timm"},
        "rules": [{"name": "decay", "match": "*", "lr_mult": "0.75 ** depth"}],
        "modifiers": [{"name": "no-decay", "match": {"any": [{"ndim": [0, 1]}, *no_weight_decay]},
                       "weight_decay": 0}],
    })


def against_timm(models: dict[str, Callable[[], nn.Module]]) -> list[dict[str, Any]]:
    from timm.optim import param_groups_layer_decay

    rows = []
    for label, make in models.items():
        model = make()
        no_wd = sorted(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else []
        rules = timm_layer_decay_rules(no_wd)
        names = {id(p): n for n, p in model.named_parameters()}
        theirs = {names[id(p)]: (g["lr_scale"], g["weight_decay"]) for g in
                  param_groups_layer_decay(model, 0.05, no_wd, layer_decay=0.75) for p in g["params"]}
        ours = {a.name: (a.lr_scale, a.weight_decay) for a in rules.resolve(model).params}
        assert ours == theirs, f"{label}: lrrules and timm disagree"
        t_timm = best(lambda: param_groups_layer_decay(model, 0.05, no_wd, layer_decay=0.75))
        t_ours = best(lambda: rules.resolve(model).param_groups())
        rows.append({"anchor": "timm param_groups_layer_decay", "model": label, "tensors": len(names),
                     "anchor_ms": t_timm * 1e3, "lrrules_ms": t_ours * 1e3, "ratio": t_ours / t_timm,
                     "same_result": True})
        print(f"  timm layer decay on {label}: timm {t_timm * 1e3:.1f} ms, lrrules {t_ours * 1e3:.1f} ms", flush=True)
    return rows


def tutorial_loop(model: nn.Module) -> list[dict[str, Any]]:
    """The classic tutorial's loop: each name looked up again in named_parameters(), so O(N^2)."""
    layer_names = [n for n, _ in model.named_parameters()]
    layer_names.reverse()
    lr, groups = 1e-2, []
    for name in layer_names:
        groups.append({"params": [p for n, p in model.named_parameters() if n == name and p.requires_grad],
                       "lr": lr})
        lr *= 0.9
    return groups


def against_tutorial(models: dict[str, Callable[[], nn.Module]]) -> list[dict[str, Any]]:
    rules = lrrules.loads("version: 1\ndefaults: {lr: 0.01}\nlayers: {by: tensor}\n"
                          "rules:\n  - {name: layerwise, match: '*', lr_mult: '0.9 ** depth'}\n")
    rows = []
    for label, make in models.items():
        model = make()
        count = sum(1 for _ in model.named_parameters())
        repeat = 3 if count < 1000 else 1
        t_loop = best(lambda: tutorial_loop(model), repeat)
        t_ours = best(lambda: rules.resolve(model).param_groups(), 3)
        rows.append({"anchor": "tutorial loop (O(N^2))", "model": label, "tensors": count,
                     "anchor_ms": t_loop * 1e3, "lrrules_ms": t_ours * 1e3, "ratio": t_ours / t_loop,
                     "same_result": True})
        print(f"  tutorial loop on {label}: loop {t_loop * 1e3:.1f} ms, lrrules {t_ours * 1e3:.1f} ms", flush=True)
    return rows


# --- 3. optimizer steps ------------------------------------------------------------------------


def optimizer_steps(model_name: str, steps: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = timm.create_model(model_name, pretrained=False, num_classes=10)
    no_wd = sorted(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else []
    plan = timm_layer_decay_rules(no_wd).resolve(model)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    params = list(model.parameters())
    distinct = len({(round(a.lr, 15), a.weight_decay) for a in plan.params})
    layouts = {
        "lrrules groups": plan.param_groups(),
        "one group per tensor": [{"params": [p], "lr": a.lr, "weight_decay": a.weight_decay}
                                 for p, a in zip(params, plan.params)],
        "one group (floor)": [{"params": params, "lr": 1e-3, "weight_decay": 0.05}],
    }
    out: dict[str, Any] = {"model": model_name, "params": sum(p.numel() for p in params),
                           "tensors": len(params), "distinct_settings": distinct, "layouts": {}}
    for label, groups in layouts.items():
        optimizer = torch.optim.AdamW(groups, foreach=True)
        optimizer.step()  # state allocated outside the timing
        took = best(lambda: [optimizer.step() for _ in range(steps)], 3) / steps
        out["layouts"][label] = {"groups": len(optimizer.param_groups), "step_ms": took * 1e3}
        print(f"  AdamW step, {label}: {len(optimizer.param_groups)} groups, {took * 1e3:.1f} ms", flush=True)
    floor_ms = out["layouts"]["one group (floor)"]["step_ms"]
    for layout in out["layouts"].values():
        layout["ratio_to_floor"] = layout["step_ms"] / floor_ms
    return out


# --- 4. the command line -----------------------------------------------------------------------


# A small process starts each command and reports its wall time and peak memory: a child forked
# straight from this large process would count this process's memory as its own.
_LAUNCHER = """
import os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def run_measured(cmd: list[str], repeat: int = 3) -> tuple[float, int]:
    """Best wall time (s) and the peak resident memory (KiB) of the command."""
    times, peak = [], 0
    for _ in range(repeat):
        done = subprocess.run([sys.executable, "-c", _LAUNCHER, *cmd], capture_output=True, text=True, cwd=ROOT,
                              check=True)
        wall, rss, code = done.stdout.split()
        if int(code) not in (0, 1):
            raise RuntimeError(f"{cmd} failed with {code}")
        times.append(float(wall))
        peak = max(peak, int(rss))
    return min(times), peak


def fake_70b(folder: Path) -> tuple[Path, Path]:
    """A sharded safetensors checkpoint laid out like a 70B Llama (723 tensors in 30 shards), headers
    only: the files are sparse, 141 GB of data that takes no disk and that only a header-only reader survives."""
    names: dict[str, list[int]] = {"model.embed_tokens.weight": [128256, 8192]}
    for i in range(80):
        p = f"model.layers.{i}."
        names |= {p + "self_attn.q_proj.weight": [8192, 8192], p + "self_attn.k_proj.weight": [1024, 8192],
                  p + "self_attn.v_proj.weight": [1024, 8192], p + "self_attn.o_proj.weight": [8192, 8192],
                  p + "mlp.gate_proj.weight": [28672, 8192], p + "mlp.up_proj.weight": [28672, 8192],
                  p + "mlp.down_proj.weight": [8192, 28672], p + "input_layernorm.weight": [8192],
                  p + "post_attention_layernorm.weight": [8192]}
    names |= {"model.norm.weight": [8192], "lm_head.weight": [128256, 8192]}
    keys, shards, weight_map = list(names), 30, {}
    for s in range(shards):
        header, offset = {}, 0
        for key in keys[s::shards]:
            size = 2 * math.prod(names[key])
            header[key] = {"dtype": "BF16", "shape": names[key], "data_offsets": [offset, offset + size]}
            offset += size
            weight_map[key] = f"model-{s:05d}-of-{shards:05d}.safetensors"
        raw = json.dumps(header).encode()
        with open(folder / f"model-{s:05d}-of-{shards:05d}.safetensors", "wb") as fh:
            fh.write(len(raw).to_bytes(8, "little") + raw)
            fh.truncate(8 + len(raw) + offset)  # sparse: the data's size, no disk spent
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    rules = folder / "llama.yaml"
    rules.write_text(
        "version: 1\ndefaults: {lr: 1.0e-5, weight_decay: 0.1}\nrules:\n"
        "  - {name: layers, match: {regex: '^model\\.layers\\.(?P<i>\\d+)\\.'}, lr_mult: '0.95 ** (79 - i)'}\n"
        "  - {name: embeddings, match: 'model.embed_tokens.*', lr_mult: 0.1}\n"
        "  - {name: head, match: ['lm_head.*', 'model.norm.*']}\n"
        "modifiers:\n  - {name: no-decay, match: {ndim: 1}, weight_decay: 0}\n")
    return index, rules


def command_line(quick: bool) -> list[dict[str, Any]]:
    import tempfile

    exe = str(Path(sys.executable).with_name("lrrules"))
    folder = Path(tempfile.mkdtemp(prefix="lrrules-70b-"))
    index, llama = fake_70b(folder)
    rules = "examples/resnet18-discriminative.yaml"
    vit_rules = "examples/vit-timm-layer-decay.yaml"
    cases = [
        ("python -c pass (floor)", [sys.executable, "-c", "pass"], None),
        ("python -c 'import timm' (floor)", [sys.executable, "-c", "import timm"], None),
        # --no-cache: the model built each time (section 6 shows the cached second command).
        ("lrrules resolve, resnet18", [exe, "resolve", rules, "--model", "resnet18", "--no-cache"],
         "python -c 'import timm' (floor)"),
        ("lrrules resolve, vit_giant_patch14_224", [exe, "resolve", vit_rules, "--model", "vit_giant_patch14_224",
                                                    "--no-cache"], "python -c 'import timm' (floor)"),
        ("lrrules resolve, 70B-style sharded safetensors (headers)", [exe, "resolve", str(llama), "--model",
                                                                       str(index)], "python -c pass (floor)"),
        ("lrrules check RULES (no model)", [exe, "check", rules], "python -c pass (floor)"),
        ("lrrules schema", [exe, "schema"], "python -c pass (floor)"),
    ]
    measured: dict[str, tuple[float, int]] = {}
    rows = []
    for label, cmd, against in cases:
        measured[label] = run_measured(cmd, 2 if quick else 3)
        wall, peak = measured[label]
        row = {"command": label, "wall_s": wall, "peak_mib": peak / 1024}
        if against:
            row["ratio_wall"] = wall / measured[against][0]
            row["ratio_peak"] = peak / measured[against][1]
        rows.append(row)
        print(f"  {label}: {wall:.2f} s, {peak / 1024:.0f} MiB", flush=True)
    return rows


# --- the report --------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def report(results: dict[str, Any]) -> str:
    m = results["machine"]
    out = [
        "# lrrules benchmarks",
        "",
        f"Made by `make bench` (`python -m benchmarks`) on {m['date']}: {m['cpu']}, {m['cores']} cores, "
        f"Python {m['python']}, torch {m['torch']}, timm {m['timm']}, lrrules {m['lrrules']}. Every figure "
        "is the best of a few runs in one process, next to its floor or anchor measured in the same run; "
        "results.json holds the same figures.",
        "",
        "## 1. Resolution scaling",
        "",
        "Synthetic models on the meta device (`stages.S.blocks.B.{fc,norm}.{weight,bias}`), rule files of "
        "N claiming rules (half globs, half regexes with captures and a formula) plus a fallback and three "
        "modifiers (ndim, module class, an unanchored regex). Floor: one pass of `named_parameters()`.",
        "",
        table(["tensors", "rules", "resolve (ms)", "µs / tensor", "floor (ms)", "× floor", "groups"],
              [[f"{r['tensors']:,}", str(r["rules"]), f"{r['resolve_ms']:.1f}", f"{r['us_per_tensor']:.1f}",
                f"{r['floor_ms']:.1f}", f"{r['ratio_to_floor']:.1f}", str(r["groups"])] for r in results["scaling"]]),
        "",
    ]
    out += results["scaling_notes"] + [""]
    if "resolve_memory" in results:
        r = results["resolve_memory"]
        out += [f"Memory: `lrrules.resolve_names` on {r['tensors']:,} (name, shape) pairs peaks at "
                f"{r['peak_mib']:.0f} MiB (tracemalloc), {r['ratio']:.2f}× the {r['list_mib']:.0f} MiB of the list "
                "itself (target: within 2×).", ""]
    out += [
        "## 2. Against the anchors",
        "",
        "Same models, same result (checked parameter by parameter before timing): timm's "
        "`param_groups_layer_decay` against the equivalent rule file (lrrules' time includes collecting "
        "the parameters and building the groups), and the classic tutorial's per-tensor loop against "
        "`examples/resnet18-layerwise-per-tensor.yaml`'s rule.",
        "",
        table(["anchor", "model", "tensors", "anchor (ms)", "lrrules (ms)", "lrrules / anchor"],
              [[r["anchor"], r["model"], f"{r['tensors']:,}", f"{r['anchor_ms']:.1f}", f"{r['lrrules_ms']:.1f}",
                f"{r['ratio']:.3g}"] for r in results["anchors"]]),
        "",
        *anchor_targets(results["anchors"]),
        "## 3. Optimizer steps",
        "",
    ]
    o = results["optimizer"]
    out += [
        f"torch AdamW (foreach) on the CPU, {o['model']} ({o['params']:,} parameters in {o['tensors']} tensors, "
        f"{o['distinct_settings']} distinct settings under timm's layer decay), gradients random, best step time.",
        "",
        table(["layout", "groups", "step (ms)", "× one group"],
              [[k, str(v["groups"]), f"{v['step_ms']:.1f}", f"{v['ratio_to_floor']:.2f}"]
               for k, v in o["layouts"].items()]),
        "",
        f"lrrules builds {o['layouts']['lrrules groups']['groups']} groups for {o['distinct_settings']} distinct "
        "settings: one group per distinct setting, the fewest there can be.",
        "",
        "## 4. Command line",
        "",
        table(["command", "wall (s)", "× floor", "peak memory (MiB)", "× floor"],
              [[r["command"], f"{r['wall_s']:.2f}", f"{r['ratio_wall']:.2f}" if "ratio_wall" in r else "-",
                f"{r['peak_mib']:.0f}", f"{r['ratio_peak']:.2f}" if "ratio_peak" in r else "-"]
               for r in results["cli"]]),
        "",
    ]
    if "headless" in results:
        out += headless.report(results["headless"])
    out += results["notes"]
    return "\n".join(out) + "\n"


def anchor_targets(rows: list[dict[str, Any]]) -> list[str]:
    """Issue 14's target against timm's ``param_groups_layer_decay``: faster on every model."""
    timm_rows = [r for r in rows if r["anchor"].startswith("timm")]
    if not timm_rows:
        return []
    worst = max(r["ratio"] for r in timm_rows)
    verdict = "met" if worst < 1 else "missed"
    return [f"Target: faster than timm's `param_groups_layer_decay` on every model: **{verdict}** (lrrules takes "
            f"{min(r['ratio'] for r in timm_rows):.2f}× to {worst:.2f}× timm's time; why: *What remains, and why* "
            "below).", ""]


def scaling_notes(rows: list[dict[str, Any]]) -> list[str]:
    by = {(10 ** round(math.log10(r["tensors"])), r["rules"]): r for r in rows}  # 9,984 tensors: the 10k model
    sizes = sorted({k[0] for k in by})
    counts = sorted({k[1] for k in by})
    notes = ["Targets (issue 14):", ""]
    worst = max(rows, key=lambda r: r["ratio_to_floor"])
    verdict = "met" if worst["ratio_to_floor"] <= 3 else "missed"
    notes.append(f"- every size and rule count within 3× the floor: **{verdict}** (worst {worst['ratio_to_floor']:.1f}×, "
                 f"{worst['tensors']:,} tensors and {worst['rules']:,} rules; best "
                 f"{min(r['ratio_to_floor'] for r in rows):.1f}×).")
    per = [f"{s:,}: {by[(s, counts[len(counts) // 2])]['us_per_tensor']:.1f} µs" for s in sizes]
    notes.append(f"- linear in tensors: time per tensor at {counts[len(counts) // 2]} rules by size: {', '.join(per)}.")
    if 100 in counts and 1000 in counts:
        growth = {s: by[(s, 1000)]["resolve_ms"] / by[(s, 100)]["resolve_ms"] for s in sizes}
        verdict = "met" if max(growth.values()) <= 1.5 else "missed"
        shown = ", ".join(f"{s:,} tensors {g:.2f}×" for s, g in growth.items())
        notes.append(f"- 100 → 1,000 rules costs at most 1.5×: **{verdict}** ({shown}). On the small model 1,000 "
                     "rules give every block a rule of its own, so each block's settings are worked out anew "
                     "(formulas evaluated, steps recorded for `explain`) where 100 rules share them: the extra "
                     "cost is settling, not matching (the index keeps matching flat, section 5).")
    return notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    parser.add_argument("--out", default=str(HERE), help="where RESULTS.md and results.json go")
    parser.add_argument("--report-only", action="store_true", help="rewrite RESULTS.md from results.json")
    args = parser.parse_args()
    out = Path(args.out)
    if args.report_only:
        results = json.loads((out / "results.json").read_text())
        results["scaling_notes"], results["notes"] = scaling_notes(results["scaling"]), NOTES
        (out / "RESULTS.md").write_text(report(results) + ported_report(results))
        return
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    logging.getLogger("timm").setLevel(logging.ERROR)  # timm warns that a synthetic model has one layer
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    counts = [10, 100] if args.quick else [10, 100, 1_000]

    def meta(name: str) -> Callable[[], nn.Module]:
        def make() -> nn.Module:
            with torch.device("meta"):
                return timm.create_model(name, pretrained=False, num_classes=10)
        return make

    results: dict[str, Any] = {"machine": {
        "date": time.strftime("%Y-%m-%d"), "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
        "timm": timm.__version__, "lrrules": lrrules.__version__}}
    print("1. resolution scaling", flush=True)
    results["scaling"] = scaling(sizes, counts)
    results["scaling_notes"] = scaling_notes(results["scaling"])
    results["resolve_memory"] = resolve_memory(100_000 if args.quick else 1_000_000)
    print("2. anchors", flush=True)
    timm_models = {"vit_base_patch16_224": meta("vit_base_patch16_224"), "convnext_base": meta("convnext_base"),
                   "synthetic 10k": lambda: synthetic(10_000)}
    tutorial_models = {"resnet18": meta("resnet18"), "synthetic 10k": lambda: synthetic(2_000 if args.quick
                                                                                         else 10_000)}
    results["anchors"] = against_timm(timm_models) + against_tutorial(tutorial_models)
    print("3. optimizer steps", flush=True)
    results["optimizer"] = optimizer_steps("vit_small_patch16_224", 3 if args.quick else 5)
    print("4. command line", flush=True)
    results["cli"] = command_line(args.quick)
    print("5. without torch: giant checkpoints and rule files", flush=True)
    results["headless"] = headless.headless(args.quick, run_measured)
    results["notes"] = NOTES
    print("5. ported rule files (issue 14)", flush=True)
    from benchmarks import matching as ported_section  # imports this module: not at the top
    results["ported"] = ported_section.run(args.quick)
    print("6. the model cache (issue 14)", flush=True)
    from benchmarks import cache as cache_section
    results["cache"] = cache_section.command_line_cache(args.quick)
    print("7. building the optimizer against timm (issue 14)", flush=True)
    from benchmarks import optimizers as optimizers_section
    results["build"] = optimizers_section.build_against_timm(repeat=3 if args.quick else 7)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "RESULTS.md").write_text(report(results) + ported_report(results))
    print(f"wrote {out / 'RESULTS.md'} and {out / 'results.json'}")


def ported_report(results: dict[str, Any]) -> str:
    """Issue 14's sections (benchmarks/matching.py, cache.py, optimizers.py), where the results hold them."""
    from benchmarks import matching as ported_section

    from benchmarks import cache as cache_section
    from benchmarks import optimizers as optimizers_section

    out = "\n" + ported_section.report(results["ported"]) if "ported" in results else ""
    out += "\n" + cache_section.report(results["cache"]) if "cache" in results else ""
    return out + ("\n" + optimizers_section.report(results["build"]) if "build" in results else "")


NOTES = [
    "## What remains, and why",
    "",
    "- Resolution is one pass over the parameters that mostly looks things up: matchers are indexed by "
    "their literal prefixes (a rule `stages.3.blocks.7.*` is tried only on names that start so), the "
    "settings of a parameter are computed once per distinct combination of rule, modifiers, captures and "
    "the variables their formulas read, regexes that cannot backtrack run without the per-match timer "
    "(which costs ten times the match). The cyclic garbage collector is left alone (a library call must "
    "not switch a process-wide setting; pausing it saved about a tenth on a 10k-tensor model). "
    "Profiled with cProfile before and after; the first version took 45 µs per tensor.",
    "- What is left per tensor is Python work that every tensor needs: reading its name, shape and owner "
    "from the module tree (about 2× the floor on its own, since the floor only walks the tree), "
    "matching the matchers with no prefix (ndim, module class, unanchored regexes) on every name, and "
    "recording the outcome (parameters that resolve alike share one outcome record). Where the 3× target "
    "is missed, this is the remainder.",
    "- The tutorial loop is quadratic: its cost grows with the square of the tensors, so the gap widens "
    "with the model.",
    "- timm's `param_groups_layer_decay` is faster than lrrules on the same model, since it does one fixed "
    "thing: lrrules takes the layers from timm's own layer map (about half of timm's time) and collects the "
    "parameters, together about 0.8× timm's time before anything is matched; the rest (a few ms on a "
    "ViT-Base) is matching a general rule file and recording every parameter's outcome for the report.",
    "- Optimizer steps on the CPU: torch's foreach AdamW over one group of every tensor was *slower* "
    "than over lrrules' groups or one group per tensor here. Each foreach operation sweeps its whole list "
    "before the next starts, so one group of all 22M parameters streams them through memory once per "
    "operation, while smaller groups keep each tensor's work in cache. On this CPU the group count "
    "costs nothing measurable; on a GPU, where each group adds kernel launches, the fewest groups are "
    "the cheapest, and lrrules gives exactly one group per distinct setting.",
]


if __name__ == "__main__":
    main()
