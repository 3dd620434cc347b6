"""Issue 14's optimizer figures: ``lrrules.build_optimizer`` beside timm's ``create_optimizer_v2`` for
the same groups (timm's layer decay, no decay on biases, norms and ``no_weight_decay()``).

    python -m benchmarks.optimizers     # this section alone, printed
    python -m benchmarks                # every section, into RESULTS.md

Real CPU models (pretrained=False): an optimizer needs real tensors. Before timing, the two
optimizers' groups are checked to hold the same tensors with the same lr and weight decay. Beside the
total, lrrules' time is split into its steps (resolving the plan, the param groups, the optimizer's
constructor), each timed alone, so what is left over timm is attributed.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from timm.optim import create_optimizer_v2

import lrrules
from lrrules.apply import groups_of

from .timing import best

MODELS = ("vit_base_patch16_224", "convnext_base")
LAYER_DECAY = 0.75


def rules_for(model: torch.nn.Module) -> lrrules.RuleSet:
    """The rule file that gives timm's ``create_optimizer_v2(..., layer_decay=0.75)`` groups."""
    no_wd = sorted(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else []
    return lrrules.RuleSet.model_validate({
        "version": 1, "defaults": {"lr": 1e-3, "weight_decay": 0.05}, "layers": {"by": "timm"},
        "optimizer": {"type": "AdamW"},
        "rules": [{"name": "decay", "match": "*", "lr_mult": f"{LAYER_DECAY} ** depth"}],
        "modifiers": [{"name": "no-decay", "match": {"any": [{"ndim": [0, 1]}, *no_wd]}, "weight_decay": 0}],
    })


def _settings(optimizer: torch.optim.Optimizer) -> dict[int, tuple[float, float]]:
    # timm keeps the scale in lr_scale and its scheduler applies it; torch's lr is the one lrrules sets.
    return {id(p): (round(g["lr"] * g.get("lr_scale", 1.0), 12), g["weight_decay"])
            for g in optimizer.param_groups for p in g["params"]}


def build_against_timm(models: tuple[str, ...] = MODELS, repeat: int = 7) -> list[dict[str, Any]]:
    rows = []
    for name in models:
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False, num_classes=10)
        rules = rules_for(model)

        def theirs() -> torch.optim.Optimizer:
            return create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=LAYER_DECAY)

        def ours() -> torch.optim.Optimizer:
            return lrrules.build_optimizer(rules, model)

        a, b = theirs(), ours()
        assert _settings(a) == _settings(b), f"{name}: lrrules and timm give different groups"
        assert len(a.param_groups) == len(b.param_groups)
        t_timm, t_ours = best(theirs, repeat), best(ours, repeat)
        plan = rules.resolve(model)
        groups = groups_of(plan, fresh=True)
        t_resolve = best(lambda: rules.resolve(model), repeat)
        t_groups = best(lambda: groups_of(plan, fresh=True), repeat)
        t_ctor = best(lambda: torch.optim.AdamW(groups, lr=1e-3, weight_decay=0.05), repeat)
        rows.append({"model": name, "tensors": len(plan.rows), "groups": len(b.param_groups),
                     "timm_ms": t_timm * 1e3, "lrrules_ms": t_ours * 1e3, "ratio": t_ours / t_timm,
                     "resolve_ms": t_resolve * 1e3, "param_groups_ms": t_groups * 1e3,
                     "constructor_ms": t_ctor * 1e3})
        print(f"  build_optimizer on {name}: timm {t_timm * 1e3:.1f} ms, lrrules {t_ours * 1e3:.1f} ms "
              f"({t_ours / t_timm:.2f}x; resolve {t_resolve * 1e3:.1f}, AdamW() {t_ctor * 1e3:.1f})", flush=True)
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    out = ["## 7. Building the optimizer (issue 14): `lrrules.build_optimizer` beside timm's `create_optimizer_v2`", "",
           "The same AdamW groups (timm's layer decay 0.75, no decay on 1-D tensors and `no_weight_decay()`), "
           "checked tensor by tensor before timing; real CPU models, pretrained=False. lrrules' time split "
           "into its steps, each timed alone: resolving the plan, handing out the param groups, torch's "
           "AdamW constructor (which timm's time includes too).", "",
           "| model | tensors | groups | timm (ms) | lrrules (ms) | lrrules / timm | resolve (ms) | "
           "param groups (ms) | AdamW() (ms) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    out += [f"| {r['model']} | {r['tensors']} | {r['groups']} | {r['timm_ms']:.1f} | {r['lrrules_ms']:.1f} | "
            f"{r['ratio']:.2f} | {r['resolve_ms']:.1f} | {r['param_groups_ms']:.2f} | {r['constructor_ms']:.1f} |"
            for r in rows]
    worst = max(r["ratio"] for r in rows)
    out += ["", f"Target: within 1.2× of timm: **{'met' if worst <= 1.2 else 'missed'}** (worst {worst:.2f}×). "
            "What lrrules adds beyond resolving (checking the optimizer's options, the param groups, freezing, "
            "recording the layout for resume) is the difference between the total and resolve + AdamW(); the "
            "rest is the resolution itself (collecting the parameters, timm's layer map, matching, settling), "
            "in params.py, layers.py and resolve.py.", ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(report(build_against_timm()))
