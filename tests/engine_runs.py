"""Running an example of examples/engines/ on two gloo ranks as a user runs it, for the engine tests:
each rank writes what it saw to ``--out``/rankN.pt, which the tests read."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "engines"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ranks(example: str, out: Path, *args: str, timeout: float = 300) -> list[dict[str, object]]:
    """Run ``examples/engines/EXAMPLE --out OUT --port P ARGS...``; what each of its two ranks wrote."""
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parents[1]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLES / example), "--out", str(out), "--port", str(free_port()),
                           *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def assert_bit_exact(ranks: list[dict[str, object]], tensors: int) -> None:
    """Each rank's resumed run ended with exactly the tensors of the run that went straight through."""
    for result in ranks:
        straight, resumed = result["straight"], result["resumed"]
        assert isinstance(straight, dict) and isinstance(resumed, dict)
        assert len(straight) == tensors and straight.keys() == resumed.keys()
        for name in straight:
            assert torch.equal(straight[name], resumed[name]), name
