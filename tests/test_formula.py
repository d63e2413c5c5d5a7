"""Formula splitting: bar terms, ||, nesting, intercept handling, syntax errors."""

import pytest

import hierbayes as hb
from hierbayes.formula import GroupTerm, parse


@pytest.mark.parametrize(
    "text, fixed, groups",
    [
        ("y ~ 1 + (1 | school)", "1", [GroupTerm("1", "school")]),
        ("y ~ (1|g)", "1", [GroupTerm("1", "g")]),
        ("y ~ 0 + (1 | g)", "0", [GroupTerm("1", "g")]),
        ("y ~ x + (x || g)", "x", [GroupTerm("x", "g", correlated=False)]),
        ("y ~ x + (0 + x | g)", "x", [GroupTerm("0 + x", "g")]),
        ("y ~ x - 1 + (x - 1 | g)", "x - 1", [GroupTerm("x - 1", "g")]),
        ("y ~ 1 + (1 | a/b)", "1", [GroupTerm("1", "a"), GroupTerm("1", "a:b")]),
        ("y ~ x*w + (1|a) + (1|b)", "x*w", [GroupTerm("1", "a"), GroupTerm("1", "b")]),
        ("y ~ log(x) + C(k)", "log(x) + C(k)", []),
    ],
)
def test_parse(text, fixed, groups):
    f = parse(text)
    assert f.response == "y"
    assert f.fixed == fixed
    assert list(f.groups) == groups


def test_variables_in_order():
    assert parse("y ~ x + C(k) + (w | g) + (1 | a/b)").variables == (
        "y",
        "k",
        "x",
        "w",
        "g",
        "a",
        "b",
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("y ~ (1 | school", r"'\(' .*\)' is missing"),
        ("y ~ x)", r"unbalanced '\)'"),
        ("y ~ x +", "a term is missing around a '\\+'"),
        ("y x", "must have the form 'response ~ terms'"),
        ("log(y) ~ x", "response must be a single column name"),
        ("y ~ (|g)", r"must read \(expr \| factor\)"),
        ("y ~ (1 | )", r"must read \(expr \| factor\)"),
        ("y ~ x ** ", "cannot parse"),
        ("y ~ (1 | a//b)", "is incomplete"),
    ],
)
def test_syntax_errors_are_spec_errors_quoting_the_formula(text, message):
    with pytest.raises(hb.SpecError, match=message):
        parse(text)
