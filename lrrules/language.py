"""The rule language, version 1: its single definition, as pydantic models.

The JSON Schema in ``schemas/`` is generated from these models, the docs quote their field
descriptions, and validation errors come from them (:mod:`lrrules.loader` reads a file and puts
them in its place). Formulas and regexes are compiled while the
file validates, so a :class:`RuleSet` that exists is one that can be resolved; nothing here needs
torch or a model.

>>> rules = RuleSet.model_validate({"version": 1, "defaults": {"lr": 1e-3},
...                                 "rules": [{"name": "all", "match": "*", "lr_mult": 2}]})
>>> rules.rules[0].lr_mult
2.0
"""

from __future__ import annotations

import functools
import graphlib
import json
import math
import re
import sys
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, PrivateAttr, Tag, ValidationInfo,
                      field_validator, model_validator)
from pydantic_core import PydanticCustomError

from .errors import POINTER_KEY, ExpressionError, FormulaError, Location, Pointer, RegexError, did_you_mean
from .formula import CONSTANTS, FUNCTIONS, Formula, compile_formula
from .reader import SourceMap
from .regexes import check_regex, compile_regex, growth_budget
from .roles import ALIASES, ROLES

#: Shapes have dimensions ``dim0`` .. ``dim{MAX_DIMS - 1}`` as formula variables.
MAX_DIMS = 8
#: The variables every formula may read; a rule's named regex groups are added to these.
VARIABLES = {
    "base_lr": "the lr in `defaults`",
    "base_weight_decay": "the weight_decay in `defaults`",
    "layer": "the parameter's layer index, 0 nearest the input (see `layers`)",
    "num_layers": "how many layers the model has under `layers`",
    "depth": "num_layers - 1 - layer: 0 nearest the output",
    "index": "the parameter's position in registration order, from 0",
    "num_tensors": "how many parameter tensors the model has",
    "ndim": "the parameter's number of dimensions",
    "numel": "the parameter's number of elements",
    "fan_in": "inputs per output: dim1 x the kernel size for 2-D and more (Linear: in_features), 1 for 1-D",
    "fan_out": "outputs per input: dim0 x the kernel size for 2-D and more (Linear: out_features), dim0 for 1-D",
    **{f"dim{k}": f"the parameter's shape[{k}] (an error on a tensor with fewer dimensions)" for k in range(MAX_DIMS)},
    # muP (mup's InfShape), read off the tensor's base shape: the same architecture at the base width.
    "ninf": "muP: how many of the parameter's dimensions differ from its base shape (its width dimensions)",
    "width_mult": "muP: size / base size of the last width dimension (a matrix's fan-in), 1 if none; "
                  "undefined for more than two",
}

_FORMULA_HELP = (
    "A number, or a formula string over the variables "
    + ", ".join(v for v in VARIABLES if not v.startswith("dim"))
    + ", dim0 ... dim" + str(MAX_DIMS - 1)
    + " and the rule's named regex groups, with + - * / // % **, comparisons, `x if c else y`, "
    "min max abs round floor ceil sqrt exp log cos sin, pi and e."
)
_STRICT = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
#: The names and values of the rule set's ``vars`` while it validates, for its formulas to read.
_VAR_NAMES: ContextVar[frozenset[str]] = ContextVar("lrrules_var_names", default=frozenset())
_VAR_VALUES: ContextVar[dict[str, float]] = ContextVar("lrrules_var_values", default={})


class _Strict(BaseModel):
    model_config = _STRICT


def _refuse(kind: str, template: str, spot: Pointer, **params: Any) -> PydanticCustomError:
    """pydantic's error of type ``kind``, its message ``template`` filled from ``params``, with the
    :class:`~lrrules.errors.Pointer` the loader places it by."""
    return PydanticCustomError(kind, template, {**params, POINTER_KEY: spot})


def _in_text(kind: str, exc: ExpressionError, template: str = "{message}", below: tuple[str | int, ...] = (),
             **params: Any) -> PydanticCustomError:
    """pydantic's error for a problem inside a formula or regex, with the text and the spot in it
    (``below``: the text's key inside the value checked, such as an option's name)."""
    return _refuse(kind, template, Pointer(below, expr=exc.expr, offset=exc.offset), message=exc.message, **params)


def _check_regex(pattern: str) -> str:
    try:
        compiled = check_regex(pattern)
    except RegexError as exc:
        raise _in_text("regex", exc) from None
    for group in compiled.groupindex:
        # A capture and a var or constant of one name: one of them would silently win.
        taken = ("a formula variable" if group in VARIABLES else "a var of this file" if group in _VAR_NAMES.get()
                 else "a formula constant" if group in CONSTANTS else "a formula function" if group in FUNCTIONS
                 else None)
        if taken:
            raise _refuse("regex", "regex group '{group}' has the name of {taken}; rename the group",
                          Pointer(expr=pattern, offset=pattern.find(f"<{group}>") + 1), group=group, taken=taken)
    return pattern


def _check_glob(pattern: str) -> str:
    if not pattern:
        raise PydanticCustomError("glob", "a glob cannot be empty; use '*' to match every name", {})
    return pattern


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, (str, int)) and not isinstance(value, bool) else value


_WORDS = BeforeValidator(_listify, json_schema_input_type=Union[str, list[str]])  # one, or a list of them
Glob = Annotated[str, BeforeValidator(_check_glob)]
Regex = Annotated[str, BeforeValidator(lambda v: _check_regex(v) if isinstance(v, str) else v)]
Globs = Annotated[list[Glob], _WORDS, Field(min_length=1)]
Regexes = Annotated[list[Regex], _WORDS, Field(min_length=1)]


def _plain_number(value: Any) -> Any:
    # pydantic's lax mode reads True as 1 and the text '1_000' as 1000; YAML 1.2 and JSON do not.
    if isinstance(value, bool):
        raise PydanticCustomError("number", "a boolean is not a number", {})
    if isinstance(value, str):
        try:  # a quoted number ('0.5'): say how to write it
            hint = f"; write {float(value)!r} without quotes" if math.isfinite(float(value)) else ""
        except ValueError:
            hint = ""
        raise PydanticCustomError("number", "Input should be a valid number, not text" + hint, {})
    return value


#: A number where only a number goes (no formula): finite, never a boolean or numeric-looking text.
Number = Annotated[float, BeforeValidator(_plain_number), Field(allow_inf_nan=False)]
Count = Annotated[int, BeforeValidator(_plain_number)]


def _check_role(value: Any) -> Any:
    if isinstance(value, str) and value not in ROLES and value not in ALIASES:
        raise PydanticCustomError("role", "unknown role '{role}'{hint}; the roles: {roles}", {
            "role": value, "hint": did_you_mean(value, [*ROLES, *ALIASES]), "roles": ", ".join(ROLES)})
    return value


Roles = Annotated[list[Annotated[str, BeforeValidator(_check_role)]], _WORDS, Field(min_length=1)]
Ndims = Annotated[list[Annotated[Count, Field(ge=0)]], BeforeValidator(_listify, json_schema_input_type=Union[
    int, list[int]]), Field(min_length=1)]


class MatchFields(_Strict):
    """A matcher written as a mapping: every field given must match (AND)."""

    glob: Globs | None = Field(None, description="Glob(s) over the whole dotted name; `*` crosses dots.")
    regex: Regexes | None = Field(
        None, description="Regex(es), searched in the name (anchor with ^ and $); named groups become variables.")
    module: Globs | None = Field(None, description="Glob(s) over the class name of the module owning the parameter.")
    ndim: Ndims | None = Field(None, description="The parameter's number of dimensions, or a list of them.")
    role: Roles | None = Field(
        None, description="What the tensor does in the model, read from its structure (any of a list): "
        "embedding, head (or output, unembedding), hidden, norm, bias, position, no_weight_decay. "
        "On a checkpoint (names and shapes only) only bias is decided; see docs/language.md#roles.")
    where: str | None = Field(
        None, description="A condition (a formula) over the shape variables (ndim, numel, fan_in, fan_out, "
        "dim0 ...) and the plain attributes of the owning module (groups, in_channels, ...): "
        "'groups == in_channels' picks depthwise convolutions. Tested after the other fields.")
    any_: list[Matcher] | None = Field(None, alias="any", min_length=1, description="Matches if any matcher does.")
    all_: list[Matcher] | None = Field(None, alias="all", min_length=1, description="Matches if all matchers do.")
    not_: Matcher | None = Field(None, alias="not", description="Matches where the matcher does not.")

    @field_validator("where", mode="after")
    @classmethod
    def _compile_where(cls, value: str | None) -> Formula | None:
        # Module attributes are known only with the model, so any name is accepted here; the file's
        # vars are known now (after --set), and bound now: a var wins over a module attribute.
        return None if value is None else _formula(value, None, condition=True).bind(_VAR_VALUES.get())

    @model_validator(mode="after")
    def _not_empty(self) -> MatchFields:
        if not self.model_fields_set:
            raise PydanticCustomError("matcher", "an empty matcher matches nothing; give glob, regex, module, ndim, "
                                      "role, where, any, all or not", {})
        return self


def _matcher_kind(value: Any) -> str | None:
    kinds = ((str, "<glob>"), (list, "<globs>"), ((dict, MatchFields), "<fields>"))
    return next((tag for kind, tag in kinds if isinstance(value, kind)), None)


Matcher = Annotated[
    Union[Annotated[Glob, Tag("<glob>")], Annotated[Annotated[list[Glob], Field(min_length=1)], Tag("<globs>")],
          Annotated[MatchFields, Tag("<fields>")]],
    Discriminator(_matcher_kind, custom_error_type="matcher", custom_error_message="a matcher is a glob string, a "
                  "list of globs, or a mapping of glob, regex, module, ndim, role, where, any, all, not")]
MATCHER_TAGS = frozenset({"<glob>", "<globs>", "<fields>"})
MatchFields.model_rebuild()


def matcher_groups(matcher: Any) -> set[str]:
    """The named regex groups a match may capture (those under ``not`` never capture)."""
    if not isinstance(matcher, MatchFields):
        return set()
    found = {group for pattern in matcher.regex or () for group in compile_regex(pattern).groupindex}
    return found.union(*(matcher_groups(sub) for sub in (matcher.any_ or []) + (matcher.all_ or [])))


def _version(value: Any) -> Any:
    if isinstance(value, bool):  # True == 1 in Python
        raise PydanticCustomError("literal_error", "unsupported version", {})
    return value


def _check_number(value: Any, negative: bool = False) -> Any:
    """A setting's number (lr, weight_decay...: >= 0), or an option's with ``negative`` (Adafactor's
    beta2_decay=-0.8; the values torch refuses are checked against the optimizer): finite, no boolean."""
    if isinstance(value, bool):
        raise PydanticCustomError("number", "a boolean is not a number; write a number or a formula", {})
    if isinstance(value, (int, float)) and not abs(value) <= sys.float_info.max:  # inf, nan, a huge integer
        raise PydanticCustomError("number", "{value} is not a finite number", {"value": value})
    if not negative and isinstance(value, (int, float)) and value < 0:
        raise PydanticCustomError("number", "{value} is negative; rates and decays are >= 0", {"value": value})
    return value


Setting = Annotated[Union[float, str], BeforeValidator(_check_number), Field(description=_FORMULA_HELP)]


def _option_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "<bool>"
    if isinstance(value, (list, tuple)):
        return "<list>"
    return "<none>" if value is None else "<value>"


OPTION_TAGS = frozenset({"<bool>", "<list>", "<none>", "<value>"})
# An option's value: a boolean, a list of numbers, null, or a number (in rules also a formula or a
# word), chosen by the input's type so that an error names only the one that applies.
_Bool = Annotated[bool, Tag("<bool>")]
_List = Annotated[list[Number], Tag("<list>")]
_None = Annotated[None, Tag("<none>")]
#: An option in rules: an integer stays an integer (``ns_steps: 5`` is not ``5.0``), a word that
#: names no variable is text (``proj_type: std``), anything else a formula.
OptionValue = Annotated[Union[_Bool, _List, _None, Annotated[
    Union[int, float, str], BeforeValidator(functools.partial(_check_number, negative=True)),
    Field(description="A number (negative where the optimizer takes it), a word (an option's text value: "
          "proj_type: std), or a formula. " + _FORMULA_HELP), Tag("<value>")]], Discriminator(_option_kind)]
#: An option in defaults: a number, kept an integer where it is one.
DefaultOption = Annotated[Union[_Bool, _List, _None, Annotated[Union[Count, Number], Tag("<value>")]],
                          Discriminator(_option_kind)]
#: The keys of a rule or modifier that hold a number or a formula.
SETTING_FIELDS = ("lr", "lr_mult", "weight_decay", "weight_decay_mult")
#: Keys of a param group that lrrules, the optimizer's caller or torch's and timm's schedulers own,
#: with what to use instead: set from a rule file, each would be overwritten or would change what a
#: scheduler computes (issue 21). Adagrad's ``initial_accumulator_value`` is an option: only the
#: ``initial_`` keys that schedulers write are here.
_RESERVED_OPTIONS = {
    "lr": "set it with the rule's lr or lr_mult (the base: defaults.lr)",
    "weight_decay": "set it with weight_decay or weight_decay_mult",
    "params": "lrrules puts the matched tensors there",
    "param_names": "lrrules puts the matched names there",
    "name": "lrrules names each group after the entries that made it",
    "lr_scale": "timm's schedulers multiply the group's lr by it, so it would scale lr twice; use lr_mult "
                "(plan.param_groups(lr_scale=True) writes it for timm's convention)",
    "initial_lr": "torch's and timm's schedulers record each group's lr there when they start and schedule from "
                  "it, resumed from their state dict; set lr or lr_mult",
    "initial_weight_decay": "timm's schedulers of weight decay record each group's weight decay there; set "
                            "weight_decay or weight_decay_mult",
    "max_lr": "OneCycleLR and CyclicLR write it from their max_lr argument: pass max_lr=plan.group_lrs()",
    "min_lr": "OneCycleLR writes it from max_lr / final_div_factor; give the scheduler its arguments",
    "base_momentum": "OneCycleLR and CyclicLR write it from their base_momentum argument",
    "max_momentum": "OneCycleLR and CyclicLR write it from their max_momentum argument",
    "swa_lr": "SWALR writes it from its swa_lr argument",
}


def reserved_option(key: str) -> str | None:
    """Why ``key`` may not be set as an option, or ``None`` when it may.

    >>> reserved_option("momentum") is None, reserved_option("initial_lr") is not None
    (True, True)
    """
    return _RESERVED_OPTIONS.get(key)


class _Settings(_Strict):
    """What a rule or modifier sets; each number may be a formula.

    ``name`` and ``match`` come first: a formula's names are checked against the match's regex
    groups, and pydantic validates fields in the order they are declared.
    """

    name: Annotated[str, Field(min_length=1, description="A unique name, shown in reports.")]
    match: Matcher | None = Field(None, description="Which parameters this entry applies to.")
    lr: Setting | None = Field(None, description="The lr, replacing base_lr. " + _FORMULA_HELP)
    lr_mult: Setting | None = Field(None, description="A multiplier on base_lr. " + _FORMULA_HELP)
    weight_decay: Setting | None = Field(None, description="The weight decay. " + _FORMULA_HELP)
    weight_decay_mult: Setting | None = Field(None, description="A multiplier on base_weight_decay.")
    options: dict[str, OptionValue] | None = Field(
        None, description="Other optimizer options for these parameters (momentum, betas, eps, ...).")
    freeze: bool = Field(False, description="Take these parameters out of training (requires_grad=False).")
    # issue 13 (several optimizers, per-rule schedules): routing and the schedule formula.
    optimizer: OptimizerName | None = Field(
        None, description="The name of an optimizer under the top-level `optimizers` that these parameters go to.")
    lr_schedule: str | None = Field(
        None, description="A formula of step, epoch, total_steps (and vars) scaling these parameters' lr over "
        "time; lrrules.rule_scheduler turns it into a scheduler (see docs/language.md).")
    remove: bool = Field(False, description="In a file that extends another: drop the inherited entry of this name.")

    @field_validator(*SETTING_FIELDS, mode="after")
    @classmethod
    def _compile_setting(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        return _formula(value, _names(info))

    @field_validator("lr_schedule", mode="after")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_formula(value, set(SCHEDULE_VARIABLES) | _VAR_NAMES.get())
            except FormulaError as exc:
                raise _in_text("formula", exc) from None
        return value

    @field_validator("options", mode="after")
    @classmethod
    def _compile_options(cls, value: dict[str, Any] | None, info: ValidationInfo) -> Any:
        if value is None:
            return value
        out, names = {}, _names(info)
        for key, item in value.items():
            _check_option_name(key)
            out[key] = _option_text(item, names, key) if isinstance(item, str) else item
        return out

    @model_validator(mode="after")
    def _one_of_each(self) -> _Settings:
        if self.remove:
            extra = sorted(self.model_fields_set - {"name", "remove"})
            if extra:
                raise PydanticCustomError("remove", "an entry with 'remove: true' only names what it removes; "
                                          "drop {fields}", {"fields": ", ".join(extra)})
            return self
        if self.lr is not None and self.lr_mult is not None:
            raise PydanticCustomError("settings", "give either lr or lr_mult, not both", {})
        if self.weight_decay is not None and self.weight_decay_mult is not None:
            raise PydanticCustomError("settings", "give either weight_decay or weight_decay_mult, not both", {})
        if self.freeze:
            given = [f for f in (*SETTING_FIELDS, "options", "optimizer", "lr_schedule") if getattr(self, f) is not None]
            if given:
                raise PydanticCustomError("settings", "freeze takes the parameters out of training, so {fields} "
                                          "would never apply; remove it", {"fields": " and ".join(given)})
        return self

    def formulas(self) -> Iterator[tuple[tuple[str, ...], Formula]]:
        """Each formula this entry holds, with its path inside the entry."""
        for name in SETTING_FIELDS:
            value = getattr(self, name)
            if isinstance(value, Formula):
                yield (name,), value
        for key, value in (self.options or {}).items():
            if isinstance(value, Formula):
                yield ("options", key), value


def _names(info: ValidationInfo) -> set[str] | None:
    if "match" not in info.data:
        return None  # the match itself failed; its error is reported, and its groups are unknown
    return set(VARIABLES) | _VAR_NAMES.get() | matcher_groups(info.data["match"])


#: A word an option takes as its text value (``std``, ``cholesky_qr``, ``adamw``): no formula.
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")


def _option_text(text: str, names: set[str] | None, key: str) -> str | Formula:
    """An option's text: a word that names no variable (nor comes close to one: ``dpeth`` stays a
    formula, so its error says "did you mean 'depth'?") is the option's value as written; the
    rest is a formula, which may be negative (an option is no rate)."""
    if (names is not None and _WORD.match(text) and text not in names and text not in FUNCTIONS
            and text not in CONSTANTS and not did_you_mean(text, names, cutoff=0.8)):
        return text
    return _formula(text, names, key, negative=True)


def _formula(text: str, names: set[str] | None, key: str | None = None, condition: bool = False,
             negative: bool = False) -> Formula:
    try:
        formula = compile_formula(text, names)
        # A formula that reads no variable has one value: checked now, so `check` needs no model.
        if (not condition and formula.constant is not None
                and not (math.isfinite(formula.constant) and (negative or formula.constant >= 0))):
            raise FormulaError(f"gives {formula.constant}; the value must be a finite number"
                               + ("" if negative else " >= 0"), text, 0)
        return formula
    except FormulaError as exc:
        raise _in_text("formula", exc, below=(key,) if key else ()) from None


def _check_option_name(key: str) -> None:
    why = reserved_option(key)
    if why is not None:
        raise _refuse("option", "'{key}' is not an option here: {why}", Pointer((key,), key=True), key=key, why=why)


class Rule(_Settings):
    """A claiming rule: every trainable parameter must be claimed by exactly one rule."""

    match: Matcher | None = Field(None, description="Which parameters this rule claims.")
    fallback: bool = Field(False, description="Claims only the parameters no other rule claims.")
    overrides: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="Names of rules this rule takes precedence over where both match "
        "(transitively); any other overlap stays a conflict. Never depends on the order in the file.")

    @model_validator(mode="after")
    def _match_or_fallback(self) -> Rule:
        if self.remove:
            return self
        if self.fallback and self.match is not None:
            raise PydanticCustomError("rule", "a fallback rule claims what no other rule claims; remove 'match'", {})
        if not self.fallback and self.match is None:
            raise PydanticCustomError("rule", "a rule needs 'match' (or 'fallback: true')", {})
        return self


class Modifier(_Settings):
    """A modifier: applies on top of whichever rule claimed a parameter; may overlap others."""

    match: Matcher | None = Field(None, description="Which parameters this modifier changes (required).")

    @model_validator(mode="after")
    def _needs_match(self) -> Modifier:
        if self.match is None and not self.remove:
            raise PydanticCustomError("modifier", "a modifier needs 'match'", {})
        return self


#: Keys of `defaults` that other tools use for lr and weight decay: a mistake here, not an option.
_MISSPELT = {"learning_rate": "lr", "base_lr": "lr", "wd": "weight_decay", "decay": "weight_decay"}


def _over_vars(value: Any) -> Any:
    """A formula in `defaults` (``lr: "lr"``, ``lr: "3 * base"``) reads only ``vars``; evaluated now."""
    if not isinstance(value, str):
        return value
    names = _VAR_NAMES.get()
    if not names:
        return value  # no vars, so no formula: text here is a wrong type, said so by Number
    try:
        return compile_formula(value, names).evaluate(_VAR_VALUES.get())
    except FormulaError as exc:
        raise _in_text("formula", exc, "{message}; a formula in defaults reads only vars") from None


#: A number of `defaults`, or a formula over `vars` (so ``--set lr=3e-4`` sweeps the base lr).
VarsNumber = Annotated[Number, BeforeValidator(_over_vars, json_schema_input_type=Union[float, str])]


class Defaults(BaseModel):
    """What every parameter starts from; any other key is an optimizer option (betas, eps, momentum, ...)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    lr: Annotated[VarsNumber, Field(gt=0, description="The base learning rate (base_lr); a number or a formula "
                                    "over vars.")]
    weight_decay: Annotated[VarsNumber, Field(ge=0, description="The base weight decay (base_weight_decay); a "
                                              "number or a formula over vars.")] = 0.0
    __pydantic_extra__: dict[str, DefaultOption]

    @model_validator(mode="after")
    def _known_looking_options(self) -> Defaults:
        for key in self.model_extra or {}:
            _check_option_name(key)
            hint = did_you_mean(_MISSPELT.get(key, key), ["lr", "weight_decay"], cutoff=0.75)
            if hint:
                raise _refuse("option", "unknown key '{key}'{hint}", Pointer((key,), key=True), key=key, hint=hint)
        return self

    @property
    def options(self) -> dict[str, Any]:
        """The optimizer options other than lr and weight_decay."""
        return dict(self.model_extra or {})


#: The optimizer type a rule file gets when it names none.
DEFAULT_TYPE = "AdamW"


class Optimizer(_Strict):
    """The optimizer build_optimizer makes."""

    type: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", description="A torch.optim class name (AdamW, "
                               "SGD, ...), or a timm optimizer name where torch has none.")] = DEFAULT_TYPE


#: The variables an ``lr_schedule`` formula reads (besides the file's vars).
SCHEDULE_VARIABLES = {
    "step": "the optimizer steps taken so far, from 0",
    "epoch": "step // steps_per_epoch (given to lrrules.rule_scheduler)",
    "total_steps": "the run's length in steps (given to lrrules.rule_scheduler)",
}
OptimizerName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")]
#: The name of the target of every parameter no rule or modifier routes: the single ``optimizer:``.
DEFAULT_OPTIMIZER = "default"


def _any_option(value: Any) -> Any:
    # A value read by an optimizer keeps its type: ns_steps: 5 stays an int, a string stays a string.
    if isinstance(value, float):
        _check_number(value, negative=True)
    if isinstance(value, list) and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise PydanticCustomError("option", "a list option holds numbers only", {})
    if isinstance(value, dict):
        raise PydanticCustomError("option", "an option is a number, a string, a boolean, null or a list of numbers", {})
    return value


class NamedOptimizer(BaseModel):
    """One of several optimizers (``optimizers: {NAME: {type, lr, ...}}``): its values are the defaults
    of the parameters routed to it (``optimizer: NAME`` on a rule or modifier)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", description=(
        "A torch.optim class name (Muon, AdamW, SGD, ...) or a timm optimizer name; a class the caller "
        "passes for this name (build(..., optimizers={NAME: cls})) replaces it."))]
    lr: Annotated[Number, Field(gt=0, description="base_lr of what is routed here (defaults.lr if absent).")] | None = (
        None)
    weight_decay: Annotated[Number, Field(ge=0, description="base_weight_decay of what is routed here.")] | None = None
    group_keys: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=list, description="Keys the optimizer reads per param group without taking them in its "
        "constructor (timm Muon's use_fallback, LARS's lars_exclude): allowed in options, put in every group.")
    __pydantic_extra__: dict[str, Annotated[Union[bool, int, float, str, list[Union[int, float]], None],
                                            BeforeValidator(_any_option)]]

    @model_validator(mode="after")
    def _options_are_options(self) -> NamedOptimizer:
        for key in self.model_extra or {}:
            if key in ("optimizer", "optimizers"):
                raise _refuse("option", "'{key}' is not an option here", Pointer((key,), key=True), key=key)
            _check_option_name(key)
        for i, key in enumerate(self.group_keys):
            if reserved_option(key) is not None:
                raise _refuse("option", "'{key}' is not an option here: {why}", Pointer(("group_keys", i)),
                              key=key, why=reserved_option(key))
        return self

    @property
    def options(self) -> dict[str, Any]:
        """The constructor options other than lr and weight_decay, types kept."""
        return dict(self.model_extra or {})


class TensorLayers(_Strict):
    """Each parameter tensor is a layer, in registration order."""

    by: Literal["tensor"]


class ModuleLayers(_Strict):
    """Parameters whose modules share their first `level` name parts are one layer, numbered by first
    appearance (parameters of the model itself, such as a top-level pos_embed, share one layer)."""

    by: Literal["module"]
    level: Annotated[Count, Field(ge=1, description="How many leading name parts make a layer.")] = 1


class TimmLayers(_Strict):
    """timm's own layer grouping (group_matcher), the one behind timm's layer decay."""

    by: Literal["timm"]


class PatternLayers(_Strict):
    """Layer i is the parameters the i-th matcher matches first, counted from the input side."""

    by: Literal["patterns"]
    patterns: list[Matcher] = Field(min_length=1, description="Matchers, from the input side to the output.")


class BlocksLayers(_Strict):
    """Any model's repeated block stacks (encoder.layer.N, model.layers.N, blocks.N, stages.N.blocks.M):
    what comes before them is layer 0, each block a layer, what comes after them the last layer.
    Separate stacks (T5's encoder and decoder) count on their own scales, aligned at the output."""

    by: Literal["blocks"]


Layers = Annotated[Union[TensorLayers, ModuleLayers, TimmLayers, PatternLayers, BlocksLayers],
                   Field(discriminator="by")]
#: The ``by`` values pydantic writes into the path of an error under ``layers``.
LAYER_TAGS = frozenset({"tensor", "module", "timm", "patterns", "blocks"})


class Phase(_Strict):
    """From an epoch (or a step) on, freeze or unfreeze parameters; they stay in their optimizer groups."""

    from_epoch: Annotated[Count, Field(ge=0)] | None = Field(None, description="The epoch this phase starts at.")
    from_step: Annotated[Count, Field(ge=0)] | None = Field(None, description="The step this phase starts at.")
    freeze: Matcher | None = Field(None, description="Parameters to freeze (requires_grad=False) from then on.")
    unfreeze: Matcher | None = Field(None, description="Parameters to unfreeze from then on.")

    @model_validator(mode="after")
    def _when_and_what(self) -> Phase:
        if (self.from_epoch is None) == (self.from_step is None):
            raise PydanticCustomError("phase", "a phase starts at either from_epoch or from_step (one of them)", {})
        if self.freeze is None and self.unfreeze is None:
            raise PydanticCustomError("phase", "a phase needs 'freeze' or 'unfreeze' (or both)", {})
        return self


#: A rule or modifier as the checks across entries see it: (kind, position, name, remove, fallback).
EntrySummary = tuple[str, int, Any, bool, bool]


def cross_entry_problems(entries: Sequence[EntrySummary]) -> list[tuple[tuple[str | int, ...], str]]:
    """Every problem between the entries of one file, as ``(loc, message)``: a name used twice, a
    ``remove`` with nothing inherited to remove, more than one fallback. Pure, so the loader can run
    it on the raw document and report these beside the field errors.

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
    rule (a modifier, the fallback, itself, a typo) and a cycle, shown as its chain. Pure.

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
    # A cycle, found by graphlib over the edges between claiming rules (rule -> what it overrides),
    # reported once at its first rule.
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

    # Where each value stands in the file, for messages: set while validating (from the validation
    # context, never after), copied and pickled with the rule set, left out of equality (see __eq__).
    # The compiled matchers are not kept here: lrrules.compile caches them by the rule set's value.
    _source: SourceMap | None = PrivateAttr(None)

    @model_validator(mode="wrap")
    @classmethod
    def _vars_visible_to_formulas(cls, data: Any, handler: Any) -> Any:
        names = data.get("vars") if isinstance(data, dict) else None
        names = names if isinstance(names, dict) else {}  # a wrong type is said so by the field
        token = _VAR_NAMES.set(frozenset(names))
        values = _VAR_VALUES.set({k: v for k, v in names.items() if isinstance(k, str) and not
                                  isinstance(v, bool) and isinstance(v, (int, float)) and abs(v) <= sys.float_info.max})
        try:
            with growth_budget():
                return handler(data)
        finally:
            _VAR_VALUES.reset(values)
            _VAR_NAMES.reset(token)

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
                raise _refuse("vars", "the var '{name}' has the name of a formula variable, function or constant; "
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
            raise _refuse("entries", "{message}", Pointer(loc), message=message)
        for loc, message in precedence_problems(self.rules, [m.name for m in self.modifiers]):
            raise _refuse("precedence", "{message}", Pointer(loc), message=message)
        return self

    @model_validator(mode="after")
    def _routes_known(self) -> RuleSet:
        if DEFAULT_OPTIMIZER in self.optimizers:
            raise _refuse("optimizers", "'{name}' names the single `optimizer:`; choose another name",
                          Pointer(("optimizers", DEFAULT_OPTIMIZER), key=True), name=DEFAULT_OPTIMIZER)
        known = set(self.optimizers) | {DEFAULT_OPTIMIZER}
        for kind, group in (("rules", self.rules), ("modifiers", self.modifiers)):
            for i, entry in enumerate(group):
                if entry.optimizer is not None and entry.optimizer not in known:
                    hint = did_you_mean(entry.optimizer, known)
                    raise _refuse("optimizers", "'{name}' is no optimizer of this file{hint}; name one under "
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
    return schema


def json_schema_text() -> str:
    """:func:`json_schema` as the text stored in ``schemas/lrrules.schema.json``."""
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"
