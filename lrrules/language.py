"""The rule language, version 1: a whole rule file (:class:`RuleSet`), the checks across its
entries, and the JSON Schema generated from it. Its pieces are in :mod:`lrrules.fields` and
:mod:`lrrules.entries`; formulas and regexes compile while the file validates, so a
:class:`RuleSet` that exists can be resolved; nothing here needs torch or a model.

>>> rules = RuleSet.model_validate({"version": 1, "defaults": {"lr": 1e-3},
...                                 "rules": [{"name": "all", "match": "*", "lr_mult": 2}]})
>>> rules.rules[0].lr_mult
2.0
"""

from __future__ import annotations

import graphlib
import json
import sys
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, \
    model_validator
from pydantic_core import PydanticCustomError

from .entries import Defaults, Modifier, NamedOptimizer, Optimizer, OptimizerName, Rule
from .errors import Location, Pointer, did_you_mean
from .fields import VAR_NAMES, VAR_VALUES, Layers, ModuleLayers, Number, Phase, refuse
from .formula import CONSTANTS, FUNCTIONS
from .reader import SourceMap
from .regexes import growth_budget
from .vocabulary import DEFAULT_OPTIMIZER, VARIABLES


def _version(value: Any) -> Any:
    if isinstance(value, bool):  # True == 1 in Python
        raise PydanticCustomError("literal_error", "unsupported version", {})
    return value


#: A rule or modifier as the checks across entries see it: (kind, position, name, remove, fallback).
EntrySummary = tuple[str, int, Any, bool, bool]


def cross_entry_problems(entries: Sequence[EntrySummary]) -> list[tuple[tuple[str | int, ...], str]]:
    """Every problem between the entries of one file, as ``(loc, message)``: a name used twice, a
    ``remove`` with nothing to remove, a second fallback. Pure: the loader runs it on the raw document.

    >>> cross_entry_problems([("rules", 0, "a", False, False), ("modifiers", 0, "a", False, False)])
    [(('modifiers', 0, 'name'), "the name 'a' is used twice (first in rules[0]); names must be unique")]
    """
    problems: list[tuple[tuple[str | int, ...], str]] = []
    seen: dict[str, str] = {}
    for kind, i, name, _, _ in entries:
        if isinstance(name, str) and seen.setdefault(name, f"{kind}[{i}]") != f"{kind}[{i}]":
            problems.append(((kind, i, "name"), f"the name '{name}' is used twice (first in {seen[name]}); "
                             "names must be unique"))
    problems += [((kind, i, "remove"), f"nothing named '{name}' is inherited to remove")
                 for kind, i, name, remove, _ in entries if remove]
    fallbacks = [i for kind, i, _, _, fallback in entries if kind == "rules" and fallback]
    return problems + [(("rules", i, "fallback"), f"a second fallback rule (the first is rules[{fallbacks[0]}]); "
                        "keep one") for i in fallbacks[1:]]


def precedence_problems(rules: Sequence[Rule], modifiers: Sequence[str] = ()) -> list[tuple[tuple[str | int, ...], str]]:
    """Every problem of the rules' ``overrides``, as ``(loc, message)``: a name that is no claiming
    rule, and a cycle, shown as its chain.

    >>> a = Rule(name="a", match="x.*", overrides=["b"]); b = Rule(name="b", match="*", overrides=["a"])
    >>> precedence_problems([a, b])[0][1]
    'a cycle of overrides: a -> b -> a; precedence must go one way'
    """
    problems: list[tuple[tuple[str | int, ...], str]] = []
    claiming = {r.name: i for i, r in enumerate(rules) if not r.fallback and not r.remove}
    for i, rule in enumerate(rules):
        if rule.fallback and rule.overrides:
            problems.append((("rules", i, "overrides"), "the fallback claims only what no rule claims, so it "
                             "overrides nothing; remove 'overrides'"))
            continue
        for j, name in enumerate(rule.overrides):
            loc: tuple[str | int, ...] = ("rules", i, "overrides", j)
            if name == rule.name:
                problems.append((loc, f"rule '{name}' cannot override itself"))
            elif name in modifiers:
                problems.append((loc, f"'{name}' is a modifier; modifiers never claim, so there is nothing to "
                                 "override (name claiming rules)"))
            elif name not in claiming:
                fallback = any(r.fallback and r.name == name for r in rules)
                why = ("is the fallback, which yields to every rule already" if fallback else
                       "names no rule" + did_you_mean(name, claiming))
                problems.append((loc, f"overrides: '{name}' {why}"))
    # A cycle among claiming rules (rule -> what it overrides), reported once at its first rule.
    graph: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter({name: () for name in claiming})
    for name, rule in ((name, rule) for rule in rules if rule.name in claiming for name in rule.overrides):
        if name in claiming and name != rule.name:
            graph.add(name, rule.name)
    try:
        graph.prepare()
    except graphlib.CycleError as exc:
        chain = exc.args[1]
        problems.append((("rules", claiming[chain[0]], "overrides"),
                         f"a cycle of overrides: {' -> '.join(chain)}; precedence must go one way"))
    return problems


class RuleSet(BaseModel):
    """A whole rule file. Build one with :func:`load` or ``RuleSet.model_validate(data)``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, title="lrrules rule file")

    schema_ref: str | None = Field(None, alias="$schema", description="The JSON Schema, for editors.")
    version: Annotated[Literal[1], BeforeValidator(_version)] = Field(description="The language version; this lrrules reads 1.")
    extends: str | list[str] | None = Field(
        None, description="Rule file(s) this one builds on, relative to it: their defaults, layers, rules and "
        "modifiers are inherited; an entry of the same name replaces an inherited one; {name, remove: true} drops it.")
    vars: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], Number] = (
        Field(default_factory=dict, description="Named numbers formulas can read; overridable (--set name=value).")
    )
    defaults: Defaults
    optimizer: Optimizer | None = Field(None, description="The optimizer build_optimizer makes; AdamW if absent. "
                                        "With `optimizers`, the one that takes what no rule routes elsewhere.")
    optimizers: dict[OptimizerName, NamedOptimizer] = Field(
        default_factory=dict, description="Named optimizers that rules and modifiers route parameters to "
        "(`optimizer: NAME`); build returns one optimizer holding them all.")
    layers: Layers = Field(default_factory=lambda: ModuleLayers(by="module"), description="How layers are counted.")
    unmatched: Literal["error", "defaults"] = Field(
        "error", description="What a parameter no rule claims gets: an error, or the defaults.")
    rules: list[Rule] = Field(default_factory=list, description="Claiming rules; their order never matters.")
    modifiers: list[Modifier] = Field(default_factory=list, description="Overlapping changes; order never matters.")
    phases: list[Phase] = Field(default_factory=list, description="Training phases: from an epoch or step on, "
                                "freeze or unfreeze parameters that stay in their optimizer groups (only "
                                "requires_grad changes). Every phase that has started applies, in order.")

    # Where each value stands in the file, for messages: set while validating (from the context),
    # left out of equality. The compiled matchers are cached by lrrules.compile, not kept here.
    _source: SourceMap | None = PrivateAttr(None)

    @model_validator(mode="wrap")
    @classmethod
    def _vars_visible_to_formulas(cls, data: Any, handler: Any) -> Any:
        names = data.get("vars") if isinstance(data, dict) else None
        names = names if isinstance(names, dict) else {}  # a wrong type is said so by the field
        token = VAR_NAMES.set(frozenset(names))
        values = VAR_VALUES.set({k: v for k, v in names.items() if isinstance(k, str) and not
                                  isinstance(v, bool) and isinstance(v, (int, float)) and abs(v) <= sys.float_info.max})
        try:
            with growth_budget():
                return handler(data)
        finally:
            VAR_VALUES.reset(values)
            VAR_NAMES.reset(token)

    @model_validator(mode="after")
    def _keep_source(self, info: ValidationInfo) -> RuleSet:
        source = (info.context or {}).get("source")
        if isinstance(source, SourceMap):
            self._source = source
        return self

    @field_validator("vars", mode="after")
    @classmethod
    def _vars_do_not_shadow(cls, value: dict[str, float]) -> dict[str, float]:
        for name in value:
            if name in VARIABLES or name in FUNCTIONS or name in CONSTANTS:
                raise refuse("vars", "the var '{name}' has the name of a formula variable, function or constant; "
                              "rename it", Pointer((name,), key=True), name=name)
        return value

    @field_validator("extends", mode="after")
    @classmethod
    def _extends_needs_a_file(cls, value: Any) -> Any:
        if value is not None:
            raise PydanticCustomError("extends", "'extends' names files, so it is resolved by lrrules.load(path); "
                                      "RuleSet.model_validate takes a flattened rule set", {})
        return value

    @model_validator(mode="after")
    def _entries_agree(self) -> RuleSet:
        entries = [(kind, i, e.name, e.remove, getattr(e, "fallback", False))
                   for kind, group in (("rules", self.rules), ("modifiers", self.modifiers))
                   for i, e in enumerate(group)]
        for loc, message in cross_entry_problems(entries):
            # One at a time here; lrrules.load reports every one of a file together, placed.
            raise refuse("entries", "{message}", Pointer(loc), message=message)
        for loc, message in precedence_problems(self.rules, [m.name for m in self.modifiers]):
            raise refuse("precedence", "{message}", Pointer(loc), message=message)
        return self

    @model_validator(mode="after")
    def _inline_options(self) -> RuleSet:
        # Options written on the single optimizer mean what they mean in `defaults`: moved there,
        # with their places, so every later message points where they are written.
        inline = self.optimizer.model_extra if self.optimizer else None
        if not inline or self.optimizer is None:
            return self
        source = self._source or SourceMap(self.path)
        for key in inline:
            if key in self.defaults.options:
                raise refuse("option", "option '{key}' is given twice: here and in defaults (at {there}); keep one",
                             Pointer(("optimizer", key), key=True), key=key,
                             there=str(source.locate(("defaults", key), key=True)))
        source.graft(SourceMap(source.path, dict(source.values), dict(source.keys)), ("optimizer",), ("defaults",),
                     {key: key for key in inline})
        defaults = Defaults.model_validate({**self.defaults.model_dump(), **inline})
        object.__setattr__(self, "defaults", defaults)  # frozen once valid: this is its validation
        object.__setattr__(self, "optimizer", Optimizer.model_validate({"type": self.optimizer.type}))
        return self

    @model_validator(mode="after")
    def _routes_known(self) -> RuleSet:
        if DEFAULT_OPTIMIZER in self.optimizers:
            raise refuse("optimizers", "'{name}' names the single `optimizer:`; choose another name",
                          Pointer(("optimizers", DEFAULT_OPTIMIZER), key=True), name=DEFAULT_OPTIMIZER)
        known = set(self.optimizers) | {DEFAULT_OPTIMIZER}
        for kind, group in (("rules", self.rules), ("modifiers", self.modifiers)):
            for i, entry in enumerate(group):
                if entry.optimizer is not None and entry.optimizer not in known:
                    hint = did_you_mean(entry.optimizer, known)
                    raise refuse("optimizers", "'{name}' is no optimizer of this file{hint}; name one under "
                                  "`optimizers` or '{default}'", Pointer((kind, i, "optimizer")),
                                  name=entry.optimizer, hint=hint, default=DEFAULT_OPTIMIZER)
        return self

    def __eq__(self, other: object) -> bool:
        # Equal content is an equal rule set, wherever it was loaded from (not pydantic's private source map).
        return isinstance(other, RuleSet) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # BaseModel types __hash__ as a method; equality is by content

    @property
    def path(self) -> str:
        """The file this rule set was loaded from, or ``<rules>``."""
        return self._source.path if self._source else "<rules>"

    def locate(self, loc: Sequence[str | int], offset: int | None = None) -> Location:
        """``file:line:col`` of a place in the document (when loaded from a file)."""
        return (self._source or SourceMap(self.path)).locate(loc, offset=offset)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a rule file, generated from :class:`RuleSet` (``schemas/lrrules.schema.json``)."""
    schema = RuleSet.model_json_schema(by_alias=True, mode="validation")
    # A file that extends another may leave 'defaults' to its parent; the flattened one needs it.
    schema["required"] = [k for k in schema["required"] if k != "defaults"]
    schema["if"] = {"not": {"required": ["extends"]}}
    schema["then"] = {"required": ["defaults"]}
    bounded: dict[str, Any] = _bounds(schema)
    return bounded


_BOUNDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}


def _bounds(node: Any) -> Any:
    """pydantic writes a bound it applies after a validator as ``ge``/``gt``, which JSON Schema does not
    read: written as ``minimum``/``exclusiveMinimum`` on the number types it bounds, so the schema refuses
    what the tool refuses (``lr: 0``)."""
    if isinstance(node, list):
        return [_bounds(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _bounds(value) for key, value in node.items() if key not in _BOUNDS}
    bounds = {_BOUNDS[key]: value for key, value in node.items() if key in _BOUNDS}
    for branch in out.get("anyOf", [out]) if bounds else ():
        if branch.get("type") in ("number", "integer"):
            branch.update(bounds)
    return out


def json_schema_text() -> str:
    """:func:`json_schema` as the text stored in ``schemas/lrrules.schema.json``."""
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"
