"""Issue 14's matching figures: rule files people port from big configs, indexed against plain.

    python -m benchmarks.matching          # this section alone, printed
    python -m benchmarks.matching --quick  # 1k and 10k tensors, 100 and 1,000 rules
    python -m benchmarks                   # every section, into RESULTS.md

The rule files here are the kind the literal-prefix index of old could not help: regexes that begin
with a capture group (``^(?P<s>stages)\\.``), unanchored regexes ending in a suffix, globs that begin
with ``*``. Each is timed three ways in one run, next to the floor (one ``named_parameters()`` pass):
lrrules with its literal index; lrrules with every rule tried on every name (the seed's loop, the
same code with the index switched off); and a naive MMEngine-style loop (each name against each key
by substring, first hit wins), which decides far less but shows what a plain loop costs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lrrules
from lrrules import matching
from lrrules.compile import _cache as compile_cache
from lrrules.matching import Index

from .__main__ import best, floor, synthetic


def ported_rules(count: int) -> lrrules.RuleSet:
    """``count`` claiming rules, one per block, of four kinds that have no literal start: a regex
    starting with a capture group, an unanchored regex ending at ``$``, an unanchored regex in the
    middle of the name, and a glob starting with ``*``; a fallback, and three modifiers."""
    lines = ["version: 1", "defaults: {lr: 0.1, weight_decay: 0.05}", "rules:"]
    for i in range(count):
        stage, block = i % 8, i // 8
        kind = i % 4
        if kind == 0:
            match = f"{{regex: '^(?P<s>stages)\\.{stage}\\.blocks\\.{block}\\.'}}"
        elif kind == 1:
            match = f"{{regex: 'stages\\.{stage}\\.blocks\\.{block}\\.(?P<part>fc|norm)\\.(weight|bias)$'}}"
        elif kind == 2:
            match = f"{{regex: '\\.{stage}\\.blocks\\.{block}\\.(?:fc|norm)\\.'}}"
        else:
            match = f"'*s.{stage}.blocks.{block}.*'"
        lines.append(f"  - {{name: r{i}, match: {match}, lr_mult: 0.5}}")
    lines += [
        "  - {name: rest, fallback: true}",
        "modifiers:",
        "  - {name: no-decay, match: {ndim: 1}, weight_decay: 0}",
        "  - {name: norms, match: {module: '*Norm*'}, lr_mult: 0.5}",
        "  - {name: fc-bias, match: {regex: '\\.fc\\.bias$'}, weight_decay_mult: 0.5}",
    ]
    return lrrules.loads("\n".join(lines) + "\n")


@contextmanager
def index_off() -> Iterator[None]:
    """Every rule tried on every name: the loop before the index (the same matchers decide)."""
    candidates, budget = Index.candidates, matching.REGEX_BUDGET
    Index.candidates = lambda self, name: range(self.size)  # type: ignore[assignment,method-assign]
    matching.REGEX_BUDGET = 1e9  # the plain loop outruns the 10 s budget on big files: that is the point
    try:
        yield
    finally:
        Index.candidates, matching.REGEX_BUDGET = candidates, budget  # type: ignore[method-assign]


def mmengine_loop(names: list[str], keys: list[str]) -> dict[str, str | None]:
    """MMEngine's ``paramwise_cfg.custom_keys``: each name against each key by substring, first hit wins."""
    ordered = sorted(keys, key=len, reverse=True)
    out: dict[str, str | None] = {}
    for name in names:
        out[name] = next((k for k in ordered if k in name), None)
    return out


def ported(sizes: list[int], counts: list[int], plain_limit: int = 1_000_000) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        model = synthetic(size)
        names = [n for n, _ in model.named_parameters()]
        repeat = 3 if size <= 10_000 else 2
        base = best(lambda: floor(model), repeat)
        for count in counts:
            rules = ported_rules(count)
            plan = rules.resolve(model)
            assert plan.ok, plan.problems()[:3]
            took = best(lambda: rules.resolve(model), repeat)

            def cold() -> None:  # a rule set never compiled in this process: compile, index, resolve
                compile_cache.clear()
                matching.regex_keys.cache_clear()
                rules.resolve(model)

            row: dict[str, Any] = {"tensors": len(names), "rules": count, "floor_ms": base * 1e3,
                                   "indexed_ms": took * 1e3, "ratio_to_floor": took / base,
                                   "cold_ms": best(cold, repeat) * 1e3}
            if size * count <= plain_limit:  # tensors x rules regex runs: beyond this, minutes
                with index_off():
                    plain = rules.resolve(model)
                    assert [(r.info.name, r.rule, r.modifiers, r.captures) for r in plain.rows] == \
                           [(r.info.name, r.rule, r.modifiers, r.captures) for r in plan.rows]
                    row["plain_ms"] = best(lambda: rules.resolve(model), 1 if count >= 1000 else repeat) * 1e3
                keys = [f".{i % 8}.blocks.{i // 8}." for i in range(count)]
                row["mmengine_ms"] = best(lambda: mmengine_loop(names, keys), 1 if count >= 1000 else repeat) * 1e3
            rows.append(row)
            extra = "".join(f", {k[:-3]} {row[k]:.1f} ms" for k in ("plain_ms", "mmengine_ms") if k in row)
            print(f"  ported {len(names):>7} tensors {count:>5} rules: indexed {took * 1e3:8.1f} ms "
                  f"({took / base:.1f}x the floor), cold {row['cold_ms']:.1f} ms{extra}", flush=True)
    return rows


def notes(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    by = {(r["tensors"], r["rules"]): r for r in rows}
    for tensors in sorted({r["tensors"] for r in rows}):
        if (tensors, 100) in by and (tensors, 1000) in by:
            growth = by[(tensors, 1000)]["indexed_ms"] / by[(tensors, 100)]["indexed_ms"]
            verdict = "met" if growth <= 1.5 else "missed"
            cold = [by[(tensors, c)].get("cold_ms") for c in (100, 1000)]
            also = (f"; compiled cold each time, {cold[1] / cold[0]:.2f}×" if None not in cold else "")
            out.append(f"- {tensors:,} tensors: 1,000 rules cost {growth:.2f}× 100 rules (target ≤ 1.5×): "
                       f"**{verdict}**{also}.")
    worst = max(r["ratio_to_floor"] for r in rows)
    out.append(f"- worst indexed resolution: {worst:.1f}× the floor (target ≤ 3×): **{'met' if worst <= 3 else 'missed'}**"
               " (see below).")
    return out


def report(rows: list[dict[str, Any]]) -> str:
    def ms(r: dict[str, Any], k: str) -> str:
        return f"{r[k]:.1f}" if k in r else "-"

    out = ["## 5. Ported rule files (issue 14): the literal index against trying every rule", "",
           "Rule files of N claiming rules with no literal start (capture-group-first regexes, unanchored "
           "suffix and middle regexes, `*`-first globs), a fallback and three modifiers, on the synthetic "
           "models. *plain*: every rule tried on every name (the same matchers; same result checked row by "
           "row); *MMEngine loop*: each name against N substring keys.", "",
           "*indexed*: the rule set compiled before (compiling is cached by value); *cold*: compiled, "
           "indexed and resolved, as the first resolve of a new rule set in a process.", "",
           "| tensors | rules | floor (ms) | indexed (ms) | × floor | cold (ms) | plain (ms) | plain / indexed | "
           "MMEngine loop (ms) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        speedup = f"{r['plain_ms'] / r['indexed_ms']:.1f}" if "plain_ms" in r else "-"
        out.append(f"| {r['tensors']:,} | {r['rules']} | {r['floor_ms']:.1f} | {r['indexed_ms']:.1f} | "
                   f"{r['ratio_to_floor']:.1f} | {ms(r, 'cold_ms')} | {ms(r, 'plain_ms')} | {speedup} | {ms(r, 'mmengine_ms')} |")
    out += ["", "Targets:", "", *notes(rows), "",
            "Why the floor ratio is missed: with the index, the matching is a few dictionary look-ups and "
            "one C-level automaton pass per name, and it no longer grows with the rule count; what is left is "
            "the resolver's per-tensor work (reading each tensor's name, shape and owning module from the "
            "module tree, settling its settings, recording its row for the report), about 7 µs a tensor "
            "against the floor's 1.5 µs, the same with 10 rules as with 1,000 (section 1). That is in "
            "params.py and resolve.py, outside this change.", "",
            "Why 1,000 rules cost more than 100 on the 1k-tensor model: it is not matching. There, 1,000 rules "
            "claim all 248 blocks, each with its own rule, where 100 rules claim 100 and the fallback the rest; "
            "the resolver settles each distinct combination of claiming rule and modifiers once (resolve.py), "
            "so it settles about 2.5× as many. Per rule and per resolve there is also the compile cache's key "
            "(the rule set dumped to JSON, about 2.5 ms for 1,000 rules) and resolve.py reading every entry's "
            "formula names for its cautions. On 10k tensors the same work is spread over ten times the tensors.",
            ""]
    return "\n".join(out)


def run(quick: bool) -> list[dict[str, Any]]:
    return ported([1_000, 10_000] if quick else [1_000, 10_000, 100_000], [100, 1_000] if quick else [10, 100, 1_000])


if __name__ == "__main__":
    import sys

    print(report(run(quick="--quick" in sys.argv[1:])))
