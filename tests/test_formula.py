"""The formula evaluator: what it computes, and every construct it refuses (a rule file is data)."""

from __future__ import annotations


import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrrules.errors import FormulaError
from lrrules.formula import MAX_DEPTH, MAX_LENGTH, compile_formula

NAMES = {"depth", "layer", "num_layers", "stage", "base_lr"}


def value(text: str, **env: float) -> float:
    return compile_formula(text, NAMES).evaluate(env)


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("0.9 ** depth", {"depth": 3}, 0.9**3),
        ("0.5 ** (4 - stage)", {"stage": 1}, 0.125),
        ("7 // 2 + 7 % 2", {}, 4),
        ("-layer + +3", {"layer": 1}, 2),
        ("1 / 4", {}, 0.25),
        ("10 if layer < 2 else 1", {"layer": 1}, 10),
        ("10 if layer < 2 else 1", {"layer": 5}, 1),
        ("1 if 0 < layer <= 3 and not stage == 2 else 0", {"layer": 3, "stage": 1}, 1),
        ("1 if layer == 1 or stage != 1 else 0", {"layer": 0, "stage": 1}, 0),
        ("min(layer, 3) + max(1, 2, stage)", {"layer": 5, "stage": 7}, 10),
        ("abs(-2) + round(2.6) + round(1.234, 1)", {}, 2 + 3 + 1.2),
        ("floor(2.7) + ceil(2.1)", {}, 5),
        ("sqrt(16) + exp(0) + log(e) + log(8, 2)", {}, 4 + 1 + 1 + 3),
        ("cos(0) + sin(pi / 2)", {}, 2),
        ("base_lr * 10", {"base_lr": 1e-3}, 1e-2),
        ("1e-3", {}, 1e-3),
    ],
)
def test_formula_computes_arithmetic(text: str, env: dict[str, float], expected: float) -> None:
    assert value(text, **env) == pytest.approx(expected, rel=1e-12)


def test_formula_reports_the_names_it_reads() -> None:
    assert compile_formula("0.5 ** (num_layers - layer)", NAMES).names == {"num_layers", "layer"}


def test_constant_formula_is_computed_once_at_compile_time() -> None:
    formula = compile_formula("2 ** 3", NAMES)
    assert formula.constant == 8.0 and formula.names == frozenset()


def test_formula_is_the_text_it_was_written_as() -> None:
    assert compile_formula(" 0.9 ** depth", NAMES) == " 0.9 ** depth"


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("0.9 ** dpeth", "unknown name 'dpeth' (did you mean 'depth'?)", 7),
        ("0.9 ** (num_layers - dpeth)", "unknown name 'dpeth'", 21),
        ("0.9 **", "syntax error", None),
        ("sqr(4)", "unknown function 'sqr' (did you mean 'sqrt'?)", 0),
        ("round(1, 2, 3)", "round() takes 1 to 2 arguments, got 3", 0),
        ("min(1)", "min() takes 2 to 64 arguments", 0),
        ("log(x=1)", "takes no keyword arguments", 0),
        ("sqrt", "'sqrt' is a function", 0),
        ("", "is empty", None),
        ("'text'", "not a number", 0),
    ],
)
def test_formula_errors_say_what_and_where(text: str, message: str, offset: int | None) -> None:
    with pytest.raises(FormulaError) as err:
        compile_formula(text, NAMES)
    assert message in err.value.message
    if offset is not None:
        assert err.value.offset == offset
    assert err.value.expr == text


def test_caret_stands_under_the_unknown_name() -> None:
    with pytest.raises(FormulaError) as err:
        compile_formula("0.9 ** (num_layers - dpeth)", NAMES)
    formula_line, caret_line = str(err.value).splitlines()[-2:]
    assert formula_line.index("dpeth") == caret_line.index("^")


def test_caret_counts_characters_not_bytes() -> None:
    with pytest.raises(FormulaError) as err:
        compile_formula("1 if 'ü' == 'ü' else dpeth", NAMES)
    assert err.value.offset == "1 if 'ü' == 'ü' else dpeth".index("dpeth")


# --- what the evaluator refuses: each guards against a rule file running code or eating the machine


def refused(text: str) -> FormulaError:
    with pytest.raises(FormulaError) as err:
        compile_formula(text, NAMES)
    return err.value


def test_refuses_import_through_dunder_builtins() -> None:
    assert "unknown function '__import__'" in refused("__import__('os')").message
    assert "attribute access is not allowed" in refused("__import__('os').system('true')").message


def test_refuses_attribute_access() -> None:
    assert "attribute access is not allowed" in refused("(1).__class__").message


def test_refuses_attribute_access_on_a_variable() -> None:
    assert "attribute access is not allowed" in refused("depth.real").message


def test_refuses_lambda() -> None:
    assert "lambda is not allowed" in refused("(lambda: 1)()").message


def test_refuses_calls_of_anything_but_listed_functions() -> None:
    assert "only the listed functions" in refused("min(1, 2)(3)").message
    assert "unknown function 'eval'" in refused("eval('1')").message
    assert "unknown function 'open'" in refused("open('/etc/passwd')").message


def test_refuses_subscripts_and_comprehensions() -> None:
    assert "indexing is not allowed" in refused("depth[0]").message
    assert "comprehensions are not allowed" in refused("[x for x in 'ab']").message
    assert "comprehensions are not allowed" in refused("min(x for x in 'ab')").message


def test_refuses_walrus_assignment() -> None:
    assert "assignment is not allowed" in refused("(x := 1)").message


def test_refuses_fstrings() -> None:
    assert "f-strings are not allowed" in refused("f'{depth}'").message


def test_refuses_statements() -> None:
    assert "syntax error" in refused("import os").message


def test_huge_power_overflows_instead_of_eating_memory() -> None:
    error = refused("9 ** 9 ** 9")
    assert "too large" in error.message
    assert error.offset == 0


def test_huge_power_of_a_variable_is_refused_when_evaluated() -> None:
    formula = compile_formula("10.0 ** (depth * 1000)", NAMES)
    with pytest.raises(FormulaError, match="too large"):
        formula.evaluate({"depth": 5})


def test_string_repetition_is_refused() -> None:
    assert "needs numbers" in refused("'a' * 1000000000").message


def test_deep_nesting_is_refused() -> None:
    assert f"nests more than {MAX_DEPTH} levels" in refused("-" * 100 + "1").message


def test_very_long_formula_is_refused() -> None:
    assert f"the limit is {MAX_LENGTH}" in refused("1+" * MAX_LENGTH + "1").message


def test_parser_recursion_limit_is_an_error_not_a_crash() -> None:
    error = refused("(" * 400 + "1" + ")" * 400)
    assert isinstance(error, FormulaError)


def test_division_by_zero_is_reported_at_evaluation_with_its_place() -> None:
    formula = compile_formula("1 / (layer - 2)", NAMES)
    with pytest.raises(FormulaError) as err:
        formula.evaluate({"layer": 2})
    assert err.value.message == "division by zero" and err.value.offset == 0


def test_constant_division_by_zero_is_reported_at_compile_time() -> None:
    assert refused("1 + 1 / 0").offset == 4


def test_math_domain_error_is_a_formula_error() -> None:
    formula = compile_formula("log(layer)", NAMES)
    with pytest.raises(FormulaError, match="cannot be computed"):
        formula.evaluate({"layer": 0})


def test_unknown_names_are_allowed_when_names_is_none() -> None:
    assert compile_formula("anything * 2", None).names == {"anything"}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_compiles_or_raises_our_error_pointing_inside_it(text: str) -> None:
    try:
        formula = compile_formula(text, NAMES)
    except FormulaError as exc:
        assert exc.offset is None or 0 <= exc.offset <= len(text)
        return
    try:
        result = formula.evaluate({n: 1 for n in NAMES})
    except FormulaError:
        return
    assert isinstance(result, float)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[0-9a-z_ +\-*/%().<>=!,]{1,40}", fullmatch=True))
def test_formula_like_text_never_escapes_as_another_exception(text: str) -> None:
    try:
        compile_formula(text, NAMES).evaluate({n: 2 for n in NAMES})
    except FormulaError:
        pass
