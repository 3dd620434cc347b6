"""Issue 16's comparisons: rule files against giant checkpoints and giant rule files, without torch.

Each timing is the best of a few runs in one process, next to its anchor:

- ``check`` against a safetensors checkpoint, beside ``check`` with no model (both subprocesses);
- the names and shapes of a 1M-tensor safetensors header, beside ``json.loads`` of that header, and
  the peak memory of reading it (tracemalloc) beside the size of the list of names;
- loading a 10,000-rule file, beside ``yaml.compose`` with libyaml's C loader on the same text.
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .timing import best




def big_header(folder: Path, count: int) -> tuple[Path, bytes]:
    """A safetensors file of ``count`` small F16 tensors (sparse: the data takes no disk)."""
    header, offset = {}, 0
    for i in range(count):
        shape = [64, 64] if i % 2 else [64]
        size = 2 * (64 * 64 if i % 2 else 64)
        header[f"b.{i // 2}.{'w' if i % 2 else 'b'}"] = {"dtype": "F16", "shape": shape,
                                                        "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    path = folder / "big.safetensors"
    with open(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little") + raw)
        fh.truncate(8 + len(raw) + offset)
    return path, raw


def big_rules(count: int) -> str:
    lines = ["version: 1", "defaults: {lr: 0.001, weight_decay: 0.05}", "rules:"]
    for i in range(count):
        lines.append(f"  - name: r{i}\n    match: 'blocks.{i}.*'\n    lr_mult: {1 + i % 7}")
    return "\n".join(lines) + "\n"


def _peak(fn: Callable[[], Any]) -> tuple[int, Any]:
    gc.collect()
    tracemalloc.start()
    try:
        result = fn()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def _names_size(names: list[str]) -> int:
    return sys.getsizeof(names) + sum(sys.getsizeof(n) for n in names)


def headless(quick: bool, run_measured: Callable[..., tuple[float, int]]) -> list[dict[str, Any]]:
    from lrrules.loader import loads
    from lrrules.sources import _safetensors_header

    rows: list[dict[str, Any]] = []
    folder = Path(tempfile.mkdtemp(prefix="lrrules-headless-"))
    count = 100_000 if quick else 1_000_000
    path, raw = big_header(folder, count)
    ours = best(lambda: _safetensors_header(path), 2)
    anchor = best(lambda: json.loads(raw), 2)
    rows.append({"what": f"names and shapes of a {count:,}-tensor safetensors header",
                 "anchor": "json.loads of the header", "seconds": ours, "anchor_seconds": anchor,
                 "ratio": ours / anchor, "target": 3.0})
    peak, entries = _peak(lambda: _safetensors_header(path))
    names = _names_size([e[0] for e in entries])
    del entries
    rows.append({"what": f"peak memory reading that header ({peak / 2**20:.0f} MiB)",
                 "anchor": f"the list of names ({names / 2**20:.0f} MiB)", "ratio": peak / names, "target": 2.0})

    text = big_rules(1_000 if quick else 10_000)
    ours = best(lambda: loads(text, "big.yaml"), 3)
    anchor = best(lambda: yaml.compose(text, Loader=yaml.CSafeLoader), 3)
    rows.append({"what": f"loading a {text.count('- name'):,}-rule file", "anchor": "yaml.compose, C loader",
                 "seconds": ours, "anchor_seconds": anchor, "ratio": ours / anchor, "target": 3.0})

    small, _ = big_header(folder, 1_000)
    rules = folder / "r.yaml"
    rules.write_text("version: 1\ndefaults: {lr: 0.001, betas: [0.9, 0.95]}\noptimizer: {type: AdamW}\n"
                     "rules:\n  - {name: all, match: '*'}\n")
    alone = run_measured([sys.executable, "-m", "lrrules", "check", str(rules)])
    against = run_measured([sys.executable, "-m", "lrrules", "check", str(rules), "--model", str(small)])
    rows.append({"what": "lrrules check RULES --model a 1,000-tensor .safetensors", "anchor": "lrrules check RULES",
                 "seconds": against[0], "anchor_seconds": alone[0], "ratio": against[0] / alone[0], "target": 1.5,
                 "peak_mib": against[1] / 1024, "anchor_peak_mib": alone[1] / 1024})
    for row in rows:
        print(f"  {row['what']}: {row['ratio']:.2f}x {row['anchor']} (target {row['target']}x)", flush=True)
    return rows


def report(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["## Without torch: giant checkpoints and rule files (issue 16)", "",
             "| what | against | time | ratio | target |", "| --- | --- | --- | --- | --- |"]
    for row in rows:
        took = f"{row['seconds']:.3f} s vs {row['anchor_seconds']:.3f} s" if "seconds" in row else ""
        met = "met" if row["ratio"] <= row["target"] else "**missed**"
        lines.append(f"| {row['what']} | {row['anchor']} | {took} | {row['ratio']:.2f}x | "
                     f"{row['target']}x ({met}) |")
    return lines + [""]
