"""Tied weights on real language models: a rule claims the tensor through any of its names."""

from __future__ import annotations

import lrrules
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from lrrules.cli import main
from tests.conftest import HF_KINDS, tiny_hf_config

ORDINARY = """version: 1
defaults: {lr: 0.001, weight_decay: 0.01}
rules:
  - name: head
    match: "lm_head.*"
    lr_mult: 10
  - name: body
    fallback: true
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _tied_head(kind: str) -> tuple[Any, set[str]]:
    """The model and the names of the tensor its lm_head shares (computed from the tensors themselves)."""
    import transformers

    from lrrules.sources import on_meta

    config = tiny_hf_config(kind)
    model = on_meta(lambda: getattr(transformers, config.architectures[0])(config))
    head = model.lm_head.weight
    names = {n for n, p in model.named_parameters(remove_duplicate=False) if p is head}
    return model, names


@pytest.mark.parametrize("kind", ["gpt2", "t5"])
def test_lm_head_rule_claims_the_tied_embedding_and_the_fallback_does_not_conflict(kind: str) -> None:
    import lrrules

    model, names = _tied_head(kind)
    assert len(names) > 1, "the test needs a tied head"
    plan = lrrules.resolve(lrrules.loads(ORDINARY), model)
    assert plan.ok and not plan.conflicts
    tied = next(a for a in plan.params if set(a.aliases) | {a.name} == names)
    assert tied.rule == "head" and tied.matched_as == "lm_head.weight"
    assert tied.lr == pytest.approx(0.01)
    others = [a for a in plan.params if a is not tied]
    assert {a.rule for a in others} == {"body"}


@pytest.mark.parametrize("kind", ["gpt2", "t5"])
def test_reports_show_every_name_and_the_name_matched(kind: str, hf_dir: Any, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(ORDINARY)
    spec = f"hf:{hf_dir(kind)}"
    code, out, _ = run(capsys, "resolve", str(rules), "--model", spec, "--format", "json")
    assert code == 0
    row = next(p for p in json.loads(out)["params"] if "lm_head.weight" in [p["name"], *p["aliases"]])
    assert row["aliases"] and row["rule"] == "head" and row["matched_as"] == "lm_head.weight"
    code, out, _ = run(capsys, "resolve", str(rules), "--model", spec, "--params")
    line = next(x for x in out.splitlines() if "lm_head.weight" in x)
    assert row["name"] in line and "head (as lm_head.weight)" in line
    code, out, _ = run(capsys, "explain", str(rules), "--model", spec, "lm_head.weight")
    assert code == 0 and "also named:" in out and "lm_head.weight" in out and "rule: head (as lm_head.weight)" in out


def test_two_rules_on_two_names_of_one_tensor_name_both_names_and_rules() -> None:
    import lrrules

    model, _ = _tied_head("gpt2")
    text = ORDINARY + "  - name: embeddings\n    match: 'transformer.wte.*'\n    lr_mult: 0.5\n"
    plan = lrrules.resolve(lrrules.loads(text), model)
    (conflict,) = plan.conflicts
    assert conflict.kind == "tied"
    assert dict(zip(conflict.names, conflict.rules)) == {"transformer.wte.weight": "embeddings",
                                                        "lm_head.weight": "head"}
    for part in ("'transformer.wte.weight' by rule 'embeddings'", "'lm_head.weight' by rule 'head'"):
        assert part in conflict.message


@pytest.mark.parametrize("kind", HF_KINDS)
def test_init_on_hugging_face_models_checks_clean(kind: str, hf_dir: Any, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = f"hf:{hf_dir(kind)}"
    for extra in ([], ["--layer-decay", "0.8"], ["--no-decay-norm-bias"]):
        out = tmp_path / f"init{len(extra)}.yaml"
        code, _, err = run(capsys, "init", "--model", spec, "-o", str(out), "--force", *extra)
        assert code == 0, err
        code, text, err = run(capsys, "check", str(out), "--model", spec, "--strict")
        assert code == 0, (out.read_text(), text, err)


def test_init_on_a_model_whose_last_parameter_is_an_alias_makes_it_the_head(tied: Any) -> None:
    from lrrules.loader import loads
    from lrrules.params import collect
    from lrrules.resolver import resolve_params
    from lrrules.starter import starter

    params, tensors = collect(tied)
    assert params[-1].name == "norm.bias", "the head's weight is the embedding's, registered first"
    text = starter(params, tied, "tied", no_decay_norm_bias=True)
    plan = resolve_params(loads(text), params, tensors, tied)
    assert plan.ok and not plan.warnings(), text
    by_name = {a.name: a for a in plan.params}
    assert by_name["embed.weight"].rule == "head" and by_name["embed.weight"].matched_as == "head.weight"
    assert by_name["norm.weight"].rule == "body"


@pytest.mark.parametrize("kind", HF_KINDS)
def test_init_on_hugging_face_models_makes_the_task_head_fast(kind: str) -> None:
    import transformers

    from lrrules.loader import loads
    from lrrules.params import collect
    from lrrules.sources import on_meta
    from lrrules.resolver import resolve_params
    from lrrules.starter import starter

    config = tiny_hf_config(kind)
    model = on_meta(lambda: getattr(transformers, config.architectures[0])(config))
    params, tensors = collect(model)
    plan = resolve_params(loads(starter(params, model, kind)), params, tensors, model)
    head = {n for a in plan.params if a.rule == "head" for n in (a.name, *a.aliases)}
    # What a user of each head class expects to train fast, named from the model's own attributes.
    output = model.get_output_embeddings()
    if output is not None:
        assert {n for n, p in model.named_parameters(remove_duplicate=False) if p is output.weight} <= head
    for attribute in ("classifier", "score", "qa_outputs"):
        if isinstance(getattr(model, attribute, None), torch.nn.Module):
            assert {f"{attribute}.{n}" for n, _ in getattr(model, attribute).named_parameters()} <= head
    base = model.base_model
    if base is not model:
        assert not head & {n for n, p in model.named_parameters() if any(p is q for q in base.parameters())
                           and p is not getattr(output, "weight", None)}, "the base model is not the head"
    if output is None and not any(hasattr(model, a) for a in ("classifier", "score", "qa_outputs")):
        assert not head, "a model without a task head gets none"
