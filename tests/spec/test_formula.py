"""Formula splitting: bar terms, ||, nesting, intercept handling, syntax errors."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hierbayes as hb
from hierbayes.spec.formula import GroupTerm, parse


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


def expected(text: str, pos: int, message: str) -> str:
    """The message of a syntax error at ``pos``: the formula, the offset and a caret line."""
    return f"formula {text!r} has a syntax error at position {pos}: {message}\n  {text}\n  " + (
        " " * pos + "^"
    )


def test_syntax_error_message_layout():
    """The layout, written out in full once."""
    with pytest.raises(hb.SpecError) as info:
        parse("y ~ 1 + (1 | school")
    assert str(info.value) == (
        "formula 'y ~ 1 + (1 | school' has a syntax error at position 19: "
        "unclosed '(' (opened at position 8)\n"
        "  y ~ 1 + (1 | school\n"
        "                     ^"
    )
    assert isinstance(info.value, ValueError)


GRAMMAR = "a grouping factor is a column name, a/b (b nested in a) or a:b"
APART = "a group-level term (expr | factor) must be a term of its own, added with '+', as in "
EXAMPLE = "as in 'y ~ 1 + x + (1 | g)'"


@pytest.mark.parametrize(
    "text, pos, message",
    [
        # unbalanced brackets
        ("y ~ 1 + (1 | school", 19, "unclosed '(' (opened at position 8)"),
        ("y ~ (x + (1 | g)", 16, "unclosed '(' (opened at position 4)"),
        ("y ~ x)", 5, "unmatched ')': no bracket before it is open"),
        ("y ~ x + (1 | g))", 15, "unmatched ')': no bracket before it is open"),
        ("y ~ (x]", 6, "']' cannot close the '(' at position 4"),
        ("y ~ log(x", 9, "unclosed '(' (opened at position 7)"),
        ("y ~ `x y", 8, "unclosed '`' (opened at position 4)"),
        ("y ~ x + 'a", 10, 'unclosed "\'" (opened at position 8)'),
        ("y ~ " + "(" * 33 + "x" + ")" * 33, 36, "brackets nested more than 32 deep"),
        # empty sides of a bar, and malformed bar terms
        (
            "y ~ (|g)",
            5,
            "nothing before '|': a group-level term reads (expr | factor), as in (1 | g)",
        ),
        (
            "y ~ x + ( | g)",
            10,
            "nothing before '|': a group-level term reads (expr | factor), as in (1 | g)",
        ),
        ("y ~ (1 | )", 9, "nothing after '|': name the grouping column, as in (1 | g)"),
        ("y ~ (x ||)", 9, "nothing after '||': name the grouping column, as in (1 | g)"),
        (
            "y ~ (1 | g | h)",
            11,
            "a second '|': a group-level term reads (expr | factor), as in (1 | g)",
        ),
        ("y ~ (1 | a//b)", 10, f"{GRAMMAR}; unexpected '//'"),
        ("y ~ (1 | g h)", 11, f"{GRAMMAR}; unexpected 'h'"),
        ("y ~ (1 | 2)", 9, f"{GRAMMAR}, got '2'"),
        ("y ~ (1 | a/)", 11, "expected a column name after '/'"),
        (
            "y ~ x | g",
            6,
            "'|' outside parentheses: write a group-level term as (expr | factor), as in (1 | g)",
        ),
        ("y ~ x:(1 | g)", 6, APART + "'y ~ x + (1 | g)'"),
        ("y ~ x - (1 | g)", 8, APART + "'y ~ x + (1 | g)'"),
        ("y ~ (1 + (1 | g))", 9, APART + "'y ~ x + (1 | g)'"),
        # the tilde and the response
        ("y x", 2, f"missing '~' between the response and the terms, {EXAMPLE}"),
        ("y", 1, f"missing '~' between the response and the terms, {EXAMPLE}"),
        ("", 0, f"the formula is empty: write 'response ~ terms', {EXAMPLE}"),
        ("y ~ x ~ z", 6, "a second '~': a formula has one, between the response and the terms"),
        (
            "y ~ x + (1 | g) ~ w",
            16,
            "a second '~': a formula has one, between the response and the terms",
        ),
        ("~ x", 0, f"the response is missing before '~', {EXAMPLE}"),
        (
            "log(y) ~ x",
            0,
            "the response must be a single column name, got 'log(y)'"
            " (quote a name with spaces in backticks: `my y`)",
        ),
        (
            "y y ~ x",
            0,
            "the response must be a single column name, got 'y y'"
            " (quote a name with spaces in backticks: `my y`)",
        ),
        ("y ~ ", 4, f"expected terms after '~', {EXAMPLE}"),
        # missing terms and operators
        ("y ~ x +", 7, "expected a term after '+'"),
        ("y ~ x + ", 8, "expected a term after '+'"),
        ("y ~ x + + z", 8, "expected a term after '+'"),
        ("y ~ + x", 4, "expected a term before '+'"),
        ("y ~ x *", 7, "expected a term after '*'"),
        ("y ~ x ** ", 9, "expected a term after '**'"),
        ("y ~ x: + z", 7, "expected a term after ':'"),
        ("y ~ (x - ) + z", 9, "expected a term after '-', found ')'"),
        ("y ~ ()", 5, "empty parentheses: a term is missing inside them"),
        ("y ~ x z", 6, "unexpected 'z': an operator such as '+' is missing before it"),
        ("y ~ 2x", 5, "unexpected 'x': an operator such as '+' is missing before it"),
        ("y ~ x, z", 5, "unexpected ',': separate terms with '+'"),
        ("y ~ x // z", 6, "unexpected '//'"),
        ("y ~ C(k)[b]", 8, "unexpected '['"),
        ("y ~ x[1]", 6, "a level in x[...] is a name or a quoted string, as in x[a]"),
        ("y ~ log(x, )", 11, "expected an argument after ','"),
        ("y ~ log(, x)", 8, "expected an argument after '('"),
        (
            "y ~ x > 2",
            6,
            "'>' compares values, which is allowed only inside a function call, as in I(x > 0)",
        ),
        # characters formulae does not read
        ("y ~ x $ z", 6, "unexpected character '$'"),
        ("y ~ x %in% k", 6, "unexpected character '%'"),
        ("y ~ x & z", 6, "unexpected character '&'"),
        ("y ~ x;", 5, "unexpected character ';'"),
        ("y ~ x +\u00a0z", 7, "unexpected character '\\xa0'"),
        ("y ~ _x", 4, "unexpected character '_'"),
        ("y ~ x + ²", 8, "unexpected character '²'"),
    ],
)
def test_syntax_errors_name_the_position(text, pos, message):
    with pytest.raises(hb.SpecError) as info:
        parse(text)
    assert str(info.value) == expected(text, pos, message)


@pytest.mark.parametrize(
    "text, pos, term, error",
    [
        # formulae's own errors, traced to the operator of the smallest failing sub-expression
        (
            "y ~ x:1 + (1 | g)",
            5,
            "x:1",
            "unsupported operand type(s) for @: 'Term' and 'Intercept'",
        ),
        ("y ~ z + (x + w) ** -1", 16, "(x + w) ** -1", "Power must be a positive integer."),
        ("y ~ x + (1 | g) + z / 2", 20, "z / 2", "Interaction with numbers does not make sense."),
        ("y ~ -x", 4, "-x", "Unary negation can only be applied to '0' or '1'"),
        # ... in a group-level expression, and nested inside a term
        ("y ~ 1 + (w + -x | g)", 13, "-x", "Unary negation can only be applied to '0' or '1'"),
        (
            "y ~ x * (z:0)",
            10,
            "z:0",
            "unsupported operand type(s) for @: 'Term' and 'NegatedIntercept'",
        ),
    ],
)
def test_formulae_errors_are_mapped_back_to_the_formula(text, pos, term, error):
    with pytest.raises(hb.SpecError) as info:
        parse(text)
    assert str(info.value) == expected(text, pos, f"formulae cannot read {term!r}: {error}")


def test_tabs_and_newlines_keep_the_caret_in_place():
    text = "y ~\tx +\n"
    with pytest.raises(hb.SpecError) as info:
        parse(text)
    assert str(info.value).split("\n")[1:] == ["  y ~ x + ", "          ^"]
    assert "at position 8: expected a term after '+'" in str(info.value)


def test_not_a_string():
    with pytest.raises(
        hb.SpecError, match="a formula is a string such as 'y ~ 1 \\+ \\(1 \\| g\\)', got int 3"
    ):
        parse(3)


@pytest.mark.parametrize(
    "text",
    [
        "y ~ I(x > 2) + C(k, Sum) + bs(x, df=3)",
        "y ~ {x + 1} + (x - 1 | g)",
        "y ~ x[a] + `odd name` + np.log(z)",
        "y ~ (x + z)**2 + x:z + (1 | a:b/c)",
    ],
)
def test_what_formulae_reads_still_reads(text):
    parse(text)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("yxg~+-*/:|()[]{},'`$ 1\t")), max_size=30))
def test_any_text_parses_or_points_inside_the_formula(text):
    """Random text: a Formula, or a SpecError with its caret within the formula (or at its end)."""
    try:
        parse(text)
    except hb.SpecError as exc:
        header, shown, caret = str(exc).split("\n")
        pos = int(re.search(r"at position (\d+):", header).group(1))
        assert 0 <= pos <= len(text)
        assert caret == "  " + " " * pos + "^"
        assert shown.startswith("  ") and len(shown) == len(text) + 2
