"""lme4-style formulas: split the group-level ``( expr | factor )`` terms from the rest.

The population-level part and each term's ``expr`` are parsed and evaluated by
`formulae <https://bambinos.github.io/formulae/>`_. This module finds the bar terms, the one
piece of lme4 syntax formulae does not keep whole: ``(x | g)`` must stay one correlated
block, ``(x || g)`` is lme4's shorthand for uncorrelated effects, and ``(1 | a/b)`` for nested
factors.

Before formulae sees anything, the whole formula is read token by token with the grammar
formulae uses, so that every syntax error can name its character offset: formulae itself
reports no positions, and silently ignores some trailing text (``y ~ x z`` would be
``y ~ x``). A :class:`~hierbayes.errors.SpecError` quotes the formula, the 0-based offset and
a caret line under the formula::

    formula 'y ~ 1 + (1 | school' has a syntax error at position 19: unclosed '(' ...
      y ~ 1 + (1 | school
                         ^

An error that formulae raises on a term that reads well is traced to the smallest failing
sub-expression: the caret points at its operator (``x:1``, ``(a + b) ** -1``), or at the start
of the term.
"""

from __future__ import annotations

from dataclasses import dataclass

import formulae as fm

from hierbayes.errors import SpecError
from hierbayes.spec.formula_syntax import (
    BARS,
    CLOSING,
    EXAMPLE,
    Node,
    Problem,
    Reader,
    Token,
    check_brackets,
    syntax_error,
    tokenize,
)

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

    ``offsets`` holds the expressions of ``offset(...)`` terms: they enter the linear
    predictor with coefficient 1 and are not part of ``fixed``.

    >>> parse("c ~ x + offset(np.log(t)) + (1 | g)").offsets
    ('np.log(t)',)
    """

    text: str
    response: str
    fixed: str
    groups: tuple[GroupTerm, ...]
    offsets: tuple[str, ...] = ()

    @property
    def variables(self) -> tuple[str, ...]:
        """Every variable name the formula reads, in order of first mention.

        Most are data columns; a name the formula's namespace provides (``pi``, a constant of
        the caller's) is one too (see :func:`hierbayes.spec.design.model_columns`).

        Examples
        --------
        >>> parse("y ~ log(x) + I(z**2) + (scale(w) | g)").variables
        ('y', 'x', 'z', 'w', 'g')
        """
        names: list[str] = [self.response]
        rhs = [self.fixed, *self.offsets] + [g.expr for g in self.groups]
        for part in rhs:
            names.extend(sorted(n for n in fm.model_description(part).var_names if n))
        for g in self.groups:
            names.extend(g.factor_columns)
        return tuple(dict.fromkeys(names))

    @property
    def names(self) -> tuple[tuple[str, bool], ...]:
        """Every name written in the formula, with whether it is called: ``(name, called)``.

        Keyword names of calls and levels in ``x[level]`` are left out; backquoted names are
        columns and left out too.

        Examples
        --------
        >>> parse("y ~ np.log(x) + C(k, Treatment('b')) + bs(z, df=4) + (1 | g)").names[1:5]
        (('np.log', True), ('x', False), ('C', True), ('k', False))
        """
        tokens = tokenize(self.text)
        found: list[tuple[str, bool]] = []
        for k, tok in enumerate(tokens):
            before = tokens[k - 1].kind if k else None
            after = tokens[k + 1].kind if k + 1 < len(tokens) else None
            if tok.kind == "name" and before != "[" and after != "=":
                found.append((tok.text, after == "("))
        return tuple(dict.fromkeys(found))


def _formulae_reads(text: str) -> Exception | None:
    try:
        fm.model_description(text)
    except Exception as exc:  # formulae raises ParseError, ResolverError, TypeError, ...
        return exc
    return None


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _locate(text: str, root: Node, exc: Exception) -> Problem:
    """Trace a formulae error on ``root`` to its smallest failing sub-expression."""
    node = root
    while True:
        for child in node.children:
            child_exc = _formulae_reads(text[child.start : child.end])
            if child_exc is not None:
                node, exc = child, child_exc
                break
        else:
            piece = text[node.start : node.end]
            at = node.start if node.op is None else node.op
            return Problem(at, f"formulae cannot read {piece!r}: {_describe(exc)}")


def _check_with_formulae(text: str, nodes: list[Node]) -> None:
    """formulae parses the terms jointly; if it fails, find and point at the failing term."""
    joined = " + ".join(text[n.start : n.end] for n in nodes)
    exc = _formulae_reads(joined)
    if exc is None:
        return
    if isinstance(exc, RecursionError):
        raise Problem(
            nodes[0].start,
            f"{len(nodes)} terms are more than formulae can read at once: use fewer terms",
        )
    for node in nodes:
        node_exc = _formulae_reads(text[node.start : node.end])
        if node_exc is not None:
            raise _locate(text, node, node_exc)
    raise Problem(nodes[0].start, f"formulae cannot read {joined!r}: {_describe(exc)}")


def _split(tokens: list[Token], sep: str) -> list[tuple[list[Token], Token | None]]:
    """Split at ``sep`` tokens outside every bracket: (tokens, the separator after them)."""
    parts: list[tuple[list[Token], Token | None]] = []
    depth, current = 0, []
    for tok in tokens:
        if tok.kind in CLOSING:
            depth += 1
        elif tok.kind in CLOSING.values():
            depth -= 1
        elif depth == 0 and tok.kind == sep:
            parts.append((current, tok))
            current = []
            continue
        current.append(tok)
    parts.append((current, None))
    return parts


def _group_term(text: str, tokens: list[Token]) -> tuple[list[GroupTerm], Node] | None:
    """Read ``( expr | factor )`` (or ``||``); None if ``tokens`` are not such a term."""
    if tokens[0].kind != "(" or tokens[-1].kind != ")":
        return None
    depth = 0
    for k, tok in enumerate(tokens):
        depth += tok.kind in CLOSING
        depth -= tok.kind in CLOSING.values()
        if depth == 0 and k < len(tokens) - 1:
            return None  # "(a) + (b)", "(1 | g):x": the first parenthesis closes early
    inner, close = tokens[1:-1], tokens[-1]
    depth, bars = 0, []
    for tok in inner:
        depth += tok.kind in CLOSING
        depth -= tok.kind in CLOSING.values()
        if depth == 0 and tok.kind in BARS:
            bars.append(tok)
    if not bars:
        return None
    bar = bars[0]
    if len(bars) > 1:
        raise Problem(
            bars[1].pos,
            f"a second {bars[1].text!r}: a group-level term reads (expr | factor), as in (1 | g)",
        )
    expr_tokens = [t for t in inner if t.pos < bar.pos]
    factor_tokens = [t for t in inner if t.pos > bar.pos]
    if not expr_tokens:
        raise Problem(
            bar.pos,
            f"nothing before {bar.text!r}: a group-level term reads (expr | factor), as in (1 | g)",
        )
    if not factor_tokens:
        raise Problem(
            close.pos,
            f"nothing after {bar.text!r}: name the grouping column, as in (1 | g)",
        )
    node = Reader(expr_tokens, bar.pos).term()
    for k, tok in enumerate(factor_tokens):
        want_name = k % 2 == 0
        if want_name and tok.kind == "quoted" and any(c in tok.text for c in "/:"):
            raise Problem(
                tok.pos,
                f"a grouping column named {tok.text} holds '/' or ':', which write nesting "
                "here: rename the column",
            )
        if want_name and tok.kind not in ("name", "quoted"):
            raise Problem(
                tok.pos,
                f"a grouping factor is a column name, a/b (b nested in a) or a:b, got {tok.text!r}",
            )
        if not want_name and tok.kind not in ("/", ":"):
            raise Problem(
                tok.pos,
                "a grouping factor is a column name, a/b (b nested in a) or a:b; "
                f"unexpected {tok.text!r}",
            )
    if len(factor_tokens) % 2 == 0:
        raise Problem(close.pos, f"expected a column name after {factor_tokens[-1].text!r}")
    expr = text[expr_tokens[0].pos : expr_tokens[-1].end]
    levels = "".join(t.text.strip("`") for t in factor_tokens).split("/")
    correlated = bar.kind == "|"
    # (expr | a/b) is lme4's (expr | a) + (expr | a:b)
    terms = [GroupTerm(expr, ":".join(levels[: k + 1]), correlated) for k in range(len(levels))]
    return terms, node


def _is_offset(tokens: list[Token]) -> bool:
    """Whether ``tokens`` are one whole call ``offset(expr)``."""
    if len(tokens) < 4 or tokens[0].text != "offset" or tokens[1].kind != "(":
        return False
    depth = 0
    for k, tok in enumerate(tokens[1:], start=1):
        depth += tok.kind in CLOSING
        depth -= tok.kind in CLOSING.values()
        if depth == 0:
            return k == len(tokens) - 1
    return False


def _refuse_offset(tokens: list[Token], where: str) -> None:
    """``offset(...)`` anywhere but as a whole population-level term is refused."""
    for k, tok in enumerate(tokens[:-1]):
        if tok.kind == "name" and tok.text == "offset" and tokens[k + 1].kind == "(":
            raise Problem(
                tok.pos,
                f"offset(...) must be {where}, as in 'y ~ x + offset(log(t)) + (1 | g)'",
            )


def _missing_tilde(tokens: list[Token]) -> Problem:
    if not tokens:
        return Problem(0, f"the formula is empty: write 'response ~ terms', {EXAMPLE}")
    at = tokens[1].pos if len(tokens) > 1 else tokens[0].end
    return Problem(at, f"missing '~' between the response and the terms, {EXAMPLE}")


def _parse(text: str) -> Formula:
    tokens = tokenize(text)
    check_brackets(tokens, len(text))
    tildes = [t for t in tokens if t.kind == "~"]
    if not tildes:
        raise _missing_tilde(tokens)
    if len(tildes) > 1:
        raise Problem(
            tildes[1].pos, "a second '~': a formula has one, between the response and the terms"
        )
    tilde = tildes[0]
    lhs = [t for t in tokens if t.pos < tilde.pos]
    rhs = [t for t in tokens if t.pos > tilde.pos]
    if not lhs:
        raise Problem(tilde.pos, f"the response is missing before '~', {EXAMPLE}")
    response = text[lhs[0].pos : lhs[-1].end]
    if len(lhs) == 1 and lhs[0].kind == "quoted":  # `my y` ~ ...
        response = response[1:-1]
    elif len(lhs) > 1 or lhs[0].kind != "name" or not response.isidentifier():
        raise Problem(
            lhs[0].pos,
            f"the response must be a single column name, got {response!r} (quote a name "
            "with spaces in backticks: `my y`)",
        )
    if not rhs:
        raise Problem(len(text), f"expected terms after '~', {EXAMPLE}")

    fixed: list[Node] = []
    offsets: list[str] = []
    groups: list[GroupTerm] = []
    group_nodes: list[Node] = []
    pieces = _split(rhs, "+")
    for k, (piece, plus) in enumerate(pieces):
        end = plus.pos if plus is not None else len(text)
        if not piece:
            if k == 0:
                raise Problem(end, "expected a term before '+'")
            raise Problem(end, "expected a term after '+'")
        read = _group_term(text, piece)
        if read is None and _is_offset(piece):
            inner = Reader(piece[2:-1], piece[-1].pos).term()
            _check_with_formulae(text, [inner])
            offsets.append(text[inner.start : inner.end])
        elif read is None:
            _refuse_offset(piece, "a term of its own, added with '+'")
            fixed.append(Reader(piece, end).term())
        else:
            _refuse_offset(piece, "a population-level term: offsets do not vary by group")
            groups.extend(read[0])
            group_nodes.append(read[1])
    if fixed:
        _check_with_formulae(text, fixed)
    for node in group_nodes:
        _check_with_formulae(text, [node])
    fixed_text = " + ".join(text[n.start : n.end] for n in fixed) if fixed else "1"
    return Formula(
        text=text,
        response=response,
        fixed=fixed_text,
        groups=tuple(groups),
        offsets=tuple(offsets),
    )


def parse(text: str) -> Formula:
    """Parse an lme4-style formula.

    Group-level blocks are read here; the rest is checked with formulae's grammar, then by
    formulae. A syntax error raises :class:`~hierbayes.errors.SpecError` quoting the
    formula, the 0-based character offset of the problem, and a caret line under it.

    Parameters
    ----------
    text : str
        ``"response ~ terms"``, with group-level terms ``(expr | factor)`` added with ``+``.

    Returns
    -------
    Formula

    Raises
    ------
    SpecError
        A syntax error: unbalanced brackets, an empty side of ``|``, a missing or second
        ``~``, a missing term or operator, a character formulae does not read, or a term
        formulae cannot read.

    Examples
    --------
    >>> f = parse("y ~ x + (x || g) + (1 | a/b)")
    >>> [str(g) for g in f.groups]
    ['(x || g)', '(1 | a)', '(1 | a:b)']
    >>> parse("y ~ 0 + (1 | g)").fixed
    '0'
    >>> try:
    ...     parse("y ~ x + (1 | g")
    ... except SpecError as exc:
    ...     print(exc)
    formula 'y ~ x + (1 | g' has a syntax error at position 14: unclosed '(' (opened at position 8)
      y ~ x + (1 | g
                    ^
    """
    if not isinstance(text, str):
        raise SpecError(
            f"a formula is a string such as 'y ~ 1 + (1 | g)', got {type(text).__name__} {text!r}"
        )
    try:
        return _parse(text)
    except Problem as problem:
        raise syntax_error(text, problem.pos, problem.message) from None
