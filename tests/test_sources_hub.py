"""`--model hf:ORG/NAME`: a hub model id, read from the local cache only (a fresh interpreter each, since
huggingface_hub reads HF_HOME when it is imported). The network is switched off: nothing is downloaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parent.parent
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _lrrules(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HF_HUB_CACHE", None)
    env.pop("TRANSFORMERS_CACHE", None)
    return subprocess.run([sys.executable, "-m", "lrrules", *argv], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def _cache(home: Path, model_id: str, config: dict[str, object]) -> None:
    """The hub cache's layout, as huggingface_hub writes it: refs/main names a snapshot holding the files."""
    repo = home / "hub" / ("models--" + model_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "snapshots" / COMMIT / "config.json").write_text(json.dumps(config))


@pytest.mark.slow  # fresh interpreters importing transformers
def test_hub_id_from_the_cache_and_offline_without_it(tmp_path: Path) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                        vocab_size=50, max_position_embeddings=32, architectures=["BertForSequenceClassification"])
    _cache(tmp_path, "someorg/tiny-bert", config.to_dict())
    result = _lrrules(tmp_path, "params", "--model", "hf:someorg/tiny-bert", "--num-classes", "3", "--format", "json")
    assert result.returncode == 0, result.stderr
    got = {p["name"]: p["shape"] for p in json.loads(result.stdout)["params"]}
    config.num_labels = 3
    expected = {n: list(p.shape) for n, p in BertForSequenceClassification(config).named_parameters()}
    assert got == expected
    assert not list(tmp_path.rglob("*.safetensors")) and not list(tmp_path.rglob("*.bin"))  # no weights

    result = _lrrules(tmp_path, "params", "--model", "hf:someorg/not-cached")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not in the Hugging Face cache" in result.stderr and "HF_HUB_OFFLINE" in result.stderr


def test_an_unreachable_hub_is_said_at_once_without_the_clients_retries(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import transformers

    from lrrules.errors import ModelError
    from lrrules.sources import _hub_config

    with socket.socket() as closed:  # a loopback port that nothing listens on: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    asked: list[str] = []
    real = transformers.AutoConfig.from_pretrained

    def recording(name: str, **kwargs: object) -> object:
        asked.append("cache" if kwargs.get("local_files_only") else "network")
        return real(name, **kwargs)

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", recording)
    with pytest.raises(ModelError, match=r"no network: 127\.0\.0\.1 cannot be reached"):
        _hub_config(transformers, "someorg/not-cached", {})
    assert asked == ["cache"]  # the hub client, which retries with back-off, was never asked
