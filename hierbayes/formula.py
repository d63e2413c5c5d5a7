"""lme4-style formulas: split the group-level ``( expr | factor )`` terms from the rest.

The population-level part and each term's ``expr`` are parsed and evaluated by
`formulae <https://bambinos.github.io/formulae/>`_. This module only finds the bar
terms, the one piece of lme4 syntax formulae does not keep whole: ``(x | g)`` must stay
one correlated block, ``(x || g)`` is lme4's shorthand for uncorrelated effects, and
``(1 | a/b)`` for nested factors.
"""

from __future__ import annotations

from dataclasses import dataclass

import formulae as fm

from hierbayes.errors import SpecError

__all__ = ["GroupTerm", "Formula", "parse"]


@dataclass(frozen=True)
class GroupTerm:
    """One group-level block ``(expr | factor)``.

    ``factor`` is a column name, or ``a:b`` for the interaction of columns (nesting).
    ``correlated`` is False for ``||`` blocks, whose effects get independent SDs only.
    """

    expr: str
    factor: str
    correlated: bool = True

    @property
    def factor_columns(self) -> tuple[str, ...]:
        return tuple(self.factor.split(":"))

    def __str__(self) -> str:
        bar = "|" if self.correlated else "||"
        return f"({self.expr} {bar} {self.factor})"


@dataclass(frozen=True)
class Formula:
    """A parsed formula: response, population-level right-hand side and group-level blocks.

    Examples
    --------
    >>> f = parse("y ~ 1 + (1 | school)")
    >>> f.response, f.fixed, f.groups
    ('y', '1', (GroupTerm(expr='1', factor='school', correlated=True),))
    """

    text: str
    response: str
    fixed: str
    groups: tuple[GroupTerm, ...]

    @property
    def variables(self) -> tuple[str, ...]:
        """Every data column the formula reads, in order of first mention."""
        names: list[str] = [self.response]
        rhs = [self.fixed] + [g.expr for g in self.groups]
        for part in rhs:
            names.extend(sorted(fm.model_description(part).var_names))
        for g in self.groups:
            names.extend(g.factor_columns)
        return tuple(dict.fromkeys(names))


def _split_top_level(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` where it is outside every parenthesis."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                raise SpecError(f"unbalanced ')' at position {i} of {text!r}")
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            start = i + len(sep)
            i = start
            continue
        i += 1
    if depth != 0:
        raise SpecError(f"unbalanced '(' in {text!r}: a ')' is missing")
    parts.append(text[start:])
    return parts


def _bar_term(piece: str) -> list[GroupTerm] | None:
    """Read ``( expr | factor )`` (or ``||``); None if ``piece`` is not a bar term."""
    piece = piece.strip()
    if not (piece.startswith("(") and piece.endswith(")")):
        return None
    inner = piece[1:-1]
    if len(_split_top_level(inner, ")")) > 1:  # e.g. "(a) + (b)" is not one parenthesis
        return None
    double = _split_top_level(inner, "||")
    parts = double if len(double) == 2 else _split_top_level(inner, "|")
    if len(parts) == 1:
        return None
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise SpecError(f"group-level term {piece!r} must read (expr | factor), as in (1 | school)")
    expr, factor = parts[0].strip(), parts[1].strip().replace(" ", "")
    correlated = len(double) != 2
    levels = factor.split("/")
    if any(not lv for lv in levels):
        raise SpecError(f"grouping factor {factor!r} in {piece!r} is incomplete")
    # (expr | a/b) is lme4's (expr | a) + (expr | a:b)
    return [GroupTerm(expr, ":".join(levels[: k + 1]), correlated) for k in range(len(levels))]


def parse(text: str) -> Formula:
    """Parse an lme4-style formula.

    Group-level blocks are read here; the rest is checked by formulae. Syntax errors
    raise :class:`~hierbayes.errors.SpecError` quoting the formula.

    Examples
    --------
    >>> f = parse("y ~ x + (x || g) + (1 | a/b)")
    >>> [str(g) for g in f.groups]
    ['(x || g)', '(1 | a)', '(1 | a:b)']
    >>> parse("y ~ 0 + (1 | g)").fixed
    '0'
    """
    if not isinstance(text, str) or "~" not in text:
        raise SpecError(
            f"formula {text!r} must have the form 'response ~ terms', e.g. 'y ~ 1 + (1 | g)'"
        )
    lhs, _, rhs = text.partition("~")
    response = lhs.strip()
    if not response.isidentifier():
        raise SpecError(
            f"formula {text!r}: the response must be a single column name, got {response!r}"
        )
    fixed_parts: list[str] = []
    groups: list[GroupTerm] = []
    try:
        pieces = [(piece, _bar_term(piece)) for piece in _split_top_level(rhs, "+")]
    except SpecError as exc:
        raise SpecError(f"formula {text!r}: {exc}") from None
    for piece, terms in pieces:
        if terms is None:
            if not piece.strip():
                raise SpecError(f"formula {text!r}: a term is missing around a '+'")
            fixed_parts.append(piece.strip())
        else:
            groups.extend(terms)
    fixed = " + ".join(fixed_parts) if fixed_parts else "1"
    for part in [fixed] + [g.expr for g in groups]:
        try:
            desc = fm.model_description(part)
        except Exception as exc:  # formulae raises its own ParseError/ScanError classes
            raise SpecError(f"formula {text!r}: cannot parse {part!r}: {exc}") from None
        if desc.group_terms:
            raise SpecError(
                f"formula {text!r}: write each group-level term as its own '+ (expr | factor)'"
            )
    return Formula(text=text, response=response, fixed=fixed, groups=tuple(groups))
