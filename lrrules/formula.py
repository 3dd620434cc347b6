"""The formula language: a small, closed evaluator for arithmetic over named numbers.

A formula can never run code: ``ast.parse(mode="eval")`` parses it and every node is looked up in
:data:`_COMPILERS` (any other node type is refused); names come from an explicit set, calls go only
to :data:`FUNCTIONS`, powers are computed in floating point (``9 ** 9 ** 9`` overflows instead of
eating memory), and length and nesting are bounded. Each text compiles once into closures (cached).

>>> f = compile_formula("0.5 ** (4 - stage)", names={"stage"})
>>> f.evaluate({"stage": 2})
0.25
"""

from __future__ import annotations

import ast
import functools
import math
import operator
import sys
from collections.abc import Callable, Collection, Mapping
from contextvars import ContextVar
from typing import Any

from .errors import FormulaError, did_you_mean

Value = int | float | bool | str
Env = Mapping[str, Value]
Code = Callable[[Env], Value]

MAX_LENGTH = 500
MAX_DEPTH = 40

#: name: (function, fewest arguments, most arguments)
FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "min": (min, 2, 64), "max": (max, 2, 64), "abs": (abs, 1, 1), "round": (round, 1, 2),
    "floor": (math.floor, 1, 1), "ceil": (math.ceil, 1, 1), "sqrt": (math.sqrt, 1, 1), "exp": (math.exp, 1, 1),
    "log": (math.log, 1, 2), "cos": (math.cos, 1, 1), "sin": (math.sin, 1, 1),
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}

_BINARY: dict[type, tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", operator.add), ast.Sub: ("-", operator.sub), ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv), ast.FloorDiv: ("//", operator.floordiv), ast.Mod: ("%", operator.mod),
    ast.Pow: ("**", lambda a, b: float(a) ** float(b)),
}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_REFUSED: dict[type, str] = {
    **{kind: f"{what} is not allowed" for kind, what in ((ast.Attribute, "attribute access"),
       (ast.Subscript, "indexing"), (ast.Lambda, "lambda"), (ast.NamedExpr, "assignment"), (ast.Starred, "unpacking"))},
    **{kind: f"{what} are not allowed" for kind, what in ((ast.JoinedStr, "f-strings"), (ast.List, "lists"),
       (ast.Tuple, "tuples"), (ast.Dict, "dicts"), (ast.Set, "sets"), (ast.ListComp, "comprehensions"),
       (ast.GeneratorExp, "comprehensions"), (ast.SetComp, "comprehensions"), (ast.DictComp, "comprehensions"))},
}


class Formula(str):
    """A parsed formula: its text (a ``str``, so a rule set still reads, compares and serialises as
    the file) that also knows the names it reads and, reading none, its ``constant`` value. It holds
    nothing else, so it pickles like a string; its code is cached per text beside this class."""

    names: frozenset[str]
    constant: float | None
    #: Names given their values when the formula was made (a `where:` condition's vars), as pairs.
    bound: tuple[tuple[str, float], ...]

    def __new__(cls, text: str, names: frozenset[str], constant: float | None = None,
                bound: tuple[tuple[str, float], ...] = ()) -> Formula:
        self = super().__new__(cls, text)
        self.names = frozenset(names)
        self.constant = constant
        self.bound = bound
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (Formula, (self.text, self.names, self.constant, self.bound))

    @property
    def text(self) -> str:
        return str.__str__(self)

    def bind(self, values: Mapping[str, float]) -> Formula:
        """This formula with the names in ``values`` fixed to them; ``names`` keeps the others.

        >>> compile_formula("groups == n", None).bind({"n": 4}).evaluate({"groups": 4})
        1.0
        """
        bound = tuple(sorted((n, values[n]) for n in self.names if n in values))
        if not bound:
            return self
        return Formula(self.text, self.names - {n for n, _ in bound}, self.constant, bound)

    def underflows(self, env: Env) -> bool:
        """Whether evaluating in ``env`` rounds a nonzero product, quotient, power or ``exp`` to 0
        (``0.5 ** 2000``): a 0 the formula's author did not write.

        >>> compile_formula("0.5 ** n", {"n"}).underflows({"n": 2000}), compile_formula("0 * n", {"n"}).underflows({"n": 1})
        (True, False)
        """
        token = _UNDERFLOWS.set([])
        try:
            _code(self.text)({**env, **dict(self.bound)})
            return bool(_UNDERFLOWS.get())
        except FormulaError:
            return False
        finally:
            _UNDERFLOWS.reset(token)

    def evaluate(self, env: Env) -> float:
        """The formula's value with ``env`` giving the variables; raises :class:`FormulaError`."""
        if self.constant is not None:
            return self.constant
        if self.bound:
            env = {**env, **dict(self.bound)}
        return _as_float(_code(self.text)(env), self.text)


#: The operations whose nonzero operands can round to 0, and where :meth:`Formula.underflows` collects them.
_UNDERFLOWING = frozenset({"*", "/", "**", "exp()"})
_UNDERFLOWS: ContextVar[list[ast.AST] | None] = ContextVar("lrrules_underflows", default=None)


@functools.lru_cache(maxsize=4096)
def _code(text: str) -> Code:
    # The text was checked against its names when the Formula was made; any name is fine here.
    return _compile(text, None)[0]


def compile_formula(text: str, names: Collection[str] | None) -> Formula:
    """Parse ``text`` into a :class:`Formula` that may read ``names`` (``None``: any name), the
    constants and the functions; :class:`FormulaError` with the offset of the offending spot."""
    code, used = _compile(text, None if names is None else frozenset(names))
    return Formula(text, used, None if used else _as_float(code({}), text))


def _compile(text: str, names: frozenset[str] | None) -> tuple[Code, frozenset[str]]:
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"is {len(text)} characters long; the limit is {MAX_LENGTH}", text[:60] + "...")
    if not text.strip():
        raise FormulaError("is empty; write a number or an expression", text)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        offset = (exc.offset or 1) - 1 + (len(text) - len(text.lstrip()))
        reason = (exc.msg or "invalid syntax").split(" (")[0]
        raise FormulaError(f"syntax error: {reason}", text, min(offset, len(text))) from None
    except (ValueError, RecursionError, MemoryError):
        raise FormulaError("cannot be parsed", text, None) from None
    compiler = _Compiler(text, names)
    code = compiler.compile(tree.body, 0)
    return code, frozenset(compiler.used)


def _as_float(value: object, text: str) -> float:
    if not isinstance(value, (int, float)):
        raise FormulaError(f"gives {value!r}, not a number", text, 0)
    try:
        return float(value)
    except OverflowError:  # integer arithmetic has no bound of its own
        raise FormulaError("gives a number too large for a float", text, 0) from None


class _Compiler:
    def __init__(self, text: str, names: frozenset[str] | None) -> None:
        self.text = text
        self.names = names
        self.used: set[str] = set()
        self._lead = len(text) - len(text.lstrip())
        self._encoded = text.strip().encode("utf-8")

    def offset(self, node: ast.AST) -> int:
        # ast offsets count UTF-8 bytes; the caret counts characters.
        raw = getattr(node, "col_offset", 0)
        return self._lead + len(self._encoded[:raw].decode("utf-8", errors="ignore"))

    def written(self, node: ast.Name) -> str:
        """The name as the text writes it. Python folds identifiers to NFKC, so full-width
        'ｄｅｐｔｈ' would silently read 'depth'; a name is only ever what it looks like."""
        text = self._encoded[node.col_offset : node.end_col_offset].decode("utf-8", errors="replace")
        if text != node.id:
            raise self.fail(node, f"the name '{text}' is not written in plain letters (it would read as "
                                  f"'{node.id}'); write '{node.id}' if that is meant")
        return text

    def fail(self, node: ast.AST, message: str) -> FormulaError:
        return FormulaError(message, self.text, self.offset(node))

    def compile(self, node: ast.AST, depth: int) -> Code:
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nests more than {MAX_DEPTH} levels deep")
        handler = _COMPILERS.get(type(node))
        if handler is None:
            raise self.fail(node, _REFUSED.get(type(node), f"'{type(node).__name__}' is not allowed in a formula"))
        return handler(self, node, depth + 1)

    def guarded(self, node: ast.AST, symbol: str, fn: Callable[..., Any], *parts: Code) -> Code:
        """Code that applies ``fn`` to the parts' values, turning arithmetic faults into FormulaError."""
        fail = self.fail

        def run(env: Env) -> Value:
            args = [part(env) for part in parts]
            for arg in args:
                if not isinstance(arg, (int, float)):
                    raise fail(node, f"'{symbol}' needs numbers, got {arg!r}")
            try:
                result: Value = fn(*args)
                if result == 0 and symbol in _UNDERFLOWING and all(args):
                    seen = _UNDERFLOWS.get()
                    if seen is not None:  # asked by Formula.underflows
                        seen.append(node)
                return result
            except ZeroDivisionError:
                raise fail(node, "division by zero") from None
            except OverflowError:
                raise fail(node, f"'{symbol}' gives a number too large") from None
            except (ValueError, TypeError) as exc:
                raise fail(node, f"'{symbol}' cannot be computed: {exc}") from None

        return run


def _constant(c: _Compiler, node: ast.Constant, depth: int) -> Code:
    value = node.value
    if isinstance(value, (complex, bytes)) or value is None or value is Ellipsis:
        raise c.fail(node, f"{value!r} is not allowed; use numbers")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > sys.float_info.max:
        raise c.fail(node, "the number is too large (the largest is about 1.8e308)")
    return lambda env: value


def _name(c: _Compiler, node: ast.Name, depth: int) -> Code:
    name = c.written(node)
    if name in CONSTANTS:
        constant = CONSTANTS[name]
        return lambda env: constant
    if name in FUNCTIONS:
        raise c.fail(node, f"'{name}' is a function; call it as {name}(...)")
    if c.names is not None and name not in c.names:
        hint = did_you_mean(name, c.names | CONSTANTS.keys())
        known = ", ".join(sorted(c.names))
        raise c.fail(node, f"unknown name '{name}'{hint}; known names: {known}")
    c.used.add(name)
    return lambda env: env[name]


def _binop(c: _Compiler, node: ast.BinOp, depth: int) -> Code:
    entry = _BINARY.get(type(node.op))
    if entry is None:
        if isinstance(node.op, ast.BitXor):  # a newcomer's power, as in a spreadsheet or LaTeX
            raise c.fail(node, "'^' is not a power here (in Python it is bitwise xor); write '**': 0.9 ** depth")
        raise c.fail(node, f"operator '{type(node.op).__name__}' is not allowed")
    symbol, fn = entry
    return c.guarded(node, symbol, fn, c.compile(node.left, depth), c.compile(node.right, depth))


def _unary(c: _Compiler, node: ast.UnaryOp, depth: int) -> Code:
    operand = c.compile(node.operand, depth)
    if isinstance(node.op, ast.Not):
        return lambda env: not operand(env)
    if isinstance(node.op, (ast.USub, ast.UAdd)):
        minus = isinstance(node.op, ast.USub)
        return c.guarded(node, "-" if minus else "+", operator.neg if minus else operator.pos, operand)
    raise c.fail(node, f"operator '{type(node.op).__name__}' is not allowed")


def _boolop(c: _Compiler, node: ast.BoolOp, depth: int) -> Code:
    values, every = [c.compile(v, depth) for v in node.values], all if isinstance(node.op, ast.And) else any
    return lambda env: every(v(env) for v in values)


def _compare(c: _Compiler, node: ast.Compare, depth: int) -> Code:
    parts = [c.compile(node.left, depth)] + [c.compile(v, depth) for v in node.comparators]
    refused = next((op for op in node.ops if type(op) not in _COMPARE), None)
    if refused is not None:
        raise c.fail(node, f"comparison '{type(refused).__name__}' is not allowed")
    ops, fail = [_COMPARE[type(op)] for op in node.ops], c.fail

    def run(env: Env) -> bool:
        values = [p(env) for p in parts]
        try:
            return all(fn(a, b) for fn, a, b in zip(ops, values, values[1:]))
        except TypeError:
            raise fail(node, f"cannot compare {values!r}") from None

    return run


def _ifexp(c: _Compiler, node: ast.IfExp, depth: int) -> Code:
    test, body, orelse = (c.compile(part, depth) for part in (node.test, node.body, node.orelse))
    return lambda env: body(env) if test(env) else orelse(env)


def _call(c: _Compiler, node: ast.Call, depth: int) -> Code:
    if not isinstance(node.func, ast.Name):
        c.compile(node.func, depth)  # refuses a lambda or an attribute with its own message
        raise c.fail(node.func, "only the listed functions can be called: " + ", ".join(FUNCTIONS))
    name = c.written(node.func)
    if name not in FUNCTIONS:
        raise c.fail(node.func, f"unknown function '{name}'{did_you_mean(name, FUNCTIONS)}; functions: "
                     + ", ".join(FUNCTIONS))
    if node.keywords:
        raise c.fail(node, f"{name}() takes no keyword arguments")
    fn, fewest, most = FUNCTIONS[name]
    args = [c.compile(a, depth) for a in node.args]
    if not fewest <= len(args) <= most:
        wanted = str(fewest) if fewest == most else f"{fewest} to {most}"
        raise c.fail(node, f"{name}() takes {wanted} arguments, got {len(args)}")
    return c.guarded(node, f"{name}()", fn, *args)


_COMPILERS: dict[type, Callable[[_Compiler, Any, int], Code]] = {
    ast.Constant: _constant, ast.Name: _name, ast.BinOp: _binop, ast.UnaryOp: _unary, ast.BoolOp: _boolop,
    ast.Compare: _compare, ast.IfExp: _ifexp, ast.Call: _call,
}
