"""The pieces the rule language's models are built from: numbers, globs, regexes and formulas
checked as they validate, the matcher (``match:``), and the layers and phases made of matchers.
Each check raises pydantic's error with the place the loader puts it by (:func:`refuse`).

>>> MatchFields.model_validate({"glob": "*.bias", "ndim": 1}).glob
['*.bias']
"""

from __future__ import annotations

import math
import sys
from contextvars import ContextVar
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .errors import POINTER_KEY, ExpressionError, FormulaError, Pointer, RegexError, did_you_mean
from .formula import CONSTANTS, FUNCTIONS, Formula, compile_formula
from .regexes import check_regex, compile_regex
from .roles import ALIASES, ROLES
from .vocabulary import VARIABLES

#: The names and values of the rule set's ``vars`` while it validates, for its formulas to read.
VAR_NAMES: ContextVar[frozenset[str]] = ContextVar("lrrules_var_names", default=frozenset())
VAR_VALUES: ContextVar[dict[str, float]] = ContextVar("lrrules_var_values", default={})


class Strict(BaseModel):
    """A model of the rule file: unknown keys refused, frozen once valid, fields by name or alias."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def refuse(kind: str, template: str, spot: Pointer, **params: Any) -> PydanticCustomError:
    """pydantic's error ``kind``, its ``template`` filled from ``params``, placed by ``spot``."""
    return PydanticCustomError(kind, template, {**params, POINTER_KEY: spot})


def in_text(kind: str, exc: ExpressionError, template: str = "{message}",
            below: tuple[str | int, ...] = ()) -> PydanticCustomError:
    """pydantic's error for a problem inside a formula or regex (``below``: the text's key in the value)."""
    return refuse(kind, template, Pointer(below, expr=exc.expr, offset=exc.offset), message=exc.message)


def _check_regex(pattern: str) -> str:
    try:
        compiled = check_regex(pattern)
    except RegexError as exc:
        raise in_text("regex", exc) from None
    for group in compiled.groupindex:
        # A capture and a var or constant of one name: one of them would silently win.
        taken = ("a formula variable" if group in VARIABLES else "a var of this file" if group in VAR_NAMES.get()
                 else "a formula constant" if group in CONSTANTS else "a formula function" if group in FUNCTIONS
                 else None)
        if taken:
            raise refuse("regex", "regex group '{group}' has the name of {taken}; rename the group",
                          Pointer(expr=pattern, offset=pattern.find(f"<{group}>") + 1), group=group, taken=taken)
    return pattern


def _check_glob(pattern: str) -> str:
    if not pattern:
        raise PydanticCustomError("glob", "a glob cannot be empty; use '*' to match every name", {})
    return pattern


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, (str, int, float)) and not isinstance(value, bool) else value


def _one_or_list(item: Any) -> BeforeValidator:
    """A list that may be written as its one item; the schema says both, with the item's bounds."""
    return BeforeValidator(_listify, json_schema_input_type=Union[item, list[item]])


Glob = Annotated[str, BeforeValidator(_check_glob), Field(min_length=1)]
Regex = Annotated[str, BeforeValidator(lambda v: _check_regex(v) if isinstance(v, str) else v)]
Globs = Annotated[list[Glob], _one_or_list(Glob), Field(min_length=1)]
Regexes = Annotated[list[Regex], _one_or_list(Regex), Field(min_length=1)]


def strict_number(value: Any) -> Any:
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
Number = Annotated[float, BeforeValidator(strict_number), Field(allow_inf_nan=False)]
Count = Annotated[int, BeforeValidator(strict_number)]


def _plain_bool(value: Any) -> Any:
    # pydantic's lax mode reads 'yes', 'on', 1 and '0' as booleans; YAML 1.2, JSON and the schema do not.
    if not isinstance(value, bool):
        raise PydanticCustomError("bool", "Input should be a valid boolean (write true or false)", {})
    return value


#: A yes/no field: a YAML or JSON boolean only.
Flag = Annotated[bool, BeforeValidator(_plain_bool)]


def _check_role(value: Any) -> Any:
    if isinstance(value, str) and value not in ROLES and value not in ALIASES:
        raise PydanticCustomError("role", "unknown role '{role}'{hint}; the roles: {roles}", {
            "role": value, "hint": did_you_mean(value, [*ROLES, *ALIASES]), "roles": ", ".join(ROLES)})
    return value


Role = Annotated[str, BeforeValidator(_check_role), Field(json_schema_extra={"enum": [*ROLES, *ALIASES]})]
Roles = Annotated[list[Role], _one_or_list(Role), Field(min_length=1)]
Ndim = Annotated[Count, Field(ge=0)]
Ndims = Annotated[list[Ndim], _one_or_list(Ndim), Field(min_length=1)]


class MatchFields(Strict):
    """A matcher written as a mapping: every field given must match (AND)."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

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
        return None if value is None else checked_formula(value, None, condition=True).bind(VAR_VALUES.get())

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


def check_number(value: Any, negative: bool = False) -> Any:
    """A setting's number (>= 0), or an option's with ``negative`` (Adafactor's beta2_decay=-0.8): finite."""
    if isinstance(value, bool):
        raise PydanticCustomError("number", "a boolean is not a number; write a number or a formula", {})
    if isinstance(value, (int, float)) and not abs(value) <= sys.float_info.max:  # inf, nan, a huge integer
        raise PydanticCustomError("number", "{value} is not a finite number", {"value": value})
    if not negative and isinstance(value, (int, float)) and value < 0:
        raise PydanticCustomError("number", "{value} is negative; rates and decays are >= 0", {"value": value})
    return value


def checked_formula(text: str, names: set[str] | None, key: str | None = None, condition: bool = False,
                    negative: bool = False) -> Formula:
    """``text`` compiled over ``names`` (``None``: any name), a constant one checked now (finite, and
    >= 0 unless ``negative`` or a ``condition``); a problem is pydantic's error, placed in the text.

    >>> checked_formula("2 * depth", {"depth"}).text
    '2 * depth'
    """
    try:
        formula = compile_formula(text, names)
        # A formula that reads no variable has one value: checked now, so `check` needs no model.
        if (not condition and formula.constant is not None
                and not (math.isfinite(formula.constant) and (negative or formula.constant >= 0))):
            raise FormulaError(f"gives {formula.constant}; the value must be a finite number"
                               + ("" if negative else " >= 0"), text, 0)
        return formula
    except FormulaError as exc:
        raise in_text("formula", exc, below=(key,) if key else ()) from None


class TensorLayers(Strict):
    """Each parameter tensor is a layer, in registration order."""

    by: Literal["tensor"]


class ModuleLayers(Strict):
    """Parameters whose modules share their first `level` name parts are one layer, numbered by first
    appearance (parameters of the model itself, such as a top-level pos_embed, share one layer)."""

    by: Literal["module"]
    level: Annotated[Count, Field(ge=1, description="How many leading name parts make a layer.")] = 1


class TimmLayers(Strict):
    """timm's own layer grouping (group_matcher), the one behind timm's layer decay."""

    by: Literal["timm"]


class PatternLayers(Strict):
    """Layer i is the parameters the i-th matcher matches first, counted from the input side."""

    by: Literal["patterns"]
    patterns: list[Matcher] = Field(min_length=1, description="Matchers, from the input side to the output.")


class BlocksLayers(Strict):
    """Any model's repeated block stacks (encoder.layer.N, model.layers.N, blocks.N, stages.N.blocks.M):
    what comes before them is layer 0, each block a layer, what comes after them the last layer.
    Separate stacks (T5's encoder and decoder) count on their own scales, aligned at the output."""

    by: Literal["blocks"]


Layers = Annotated[Union[TensorLayers, ModuleLayers, TimmLayers, PatternLayers, BlocksLayers],
                   Field(discriminator="by")]
#: The ``by`` values pydantic writes into the path of an error under ``layers``.
LAYER_TAGS = frozenset({"tensor", "module", "timm", "patterns", "blocks"})


class Phase(Strict):
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
