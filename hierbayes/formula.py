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

__all__ = ["GroupTerm", "Formula", "parse"]

#: Deepest nesting of brackets read; formulae's recursive parser fails not far beyond.
MAX_DEPTH = 32

_EXAMPLE = "as in 'y ~ 1 + x + (1 | g)'"
_WHITESPACE = " \t\n\r"
_DIGITS = "0123456789"
# Longest first, so that "**" is not read as two "*".
_OPERATORS = (
    "||",
    "**",
    "//",
    "==",
    "!=",
    "<=",
    ">=",
    "+",
    "-",
    "*",
    "/",
    ":",
    "~",
    "|",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    "=",
    "<",
    ">",
)
_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
_CLOSING = {"(": ")", "[": "]", "{": "}"}
_BARS = ("|", "||")


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
        the caller's) is one too (see :func:`hierbayes.design.model_columns`).

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
        tokens = _tokenize(self.text)
        found: list[tuple[str, bool]] = []
        for k, tok in enumerate(tokens):
            before = tokens[k - 1].kind if k else None
            after = tokens[k + 1].kind if k + 1 < len(tokens) else None
            if tok.kind == "name" and before != "[" and after != "=":
                found.append((tok.text, after == "("))
        return tuple(dict.fromkeys(found))


class _Problem(Exception):
    """A syntax error at character ``pos`` of the formula; :func:`parse` formats it."""

    def __init__(self, pos: int, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


def _syntax_error(text: str, pos: int, message: str) -> SpecError:
    """The SpecError for a problem at offset ``pos``: the formula, the offset, a caret line.

    Tabs and line breaks are shown as spaces, so that the caret stays under its character.

    Examples
    --------
    >>> print(_syntax_error("y ~ x +", 7, "expected a term after '+'"))
    formula 'y ~ x +' has a syntax error at position 7: expected a term after '+'
      y ~ x +
             ^
    """
    shown = "".join(" " if c in "\t\n\r\v\f" else c for c in text)
    return SpecError(
        f"formula {text!r} has a syntax error at position {pos}: {message}\n"
        f"  {shown}\n  {' ' * pos}^"
    )


@dataclass(frozen=True)
class _Token:
    """A token of a formula: ``kind`` is "name", "number", "string", "quoted" or the operator."""

    kind: str
    text: str
    pos: int

    @property
    def end(self) -> int:
        return self.pos + len(self.text)


def _tokenize(text: str) -> list[_Token]:
    """Split ``text`` into tokens as formulae's scanner does, keeping each token's offset."""
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _WHITESPACE:
            i += 1
            continue
        if c.isalpha():  # names may hold letters, digits, "." and "_" after the first letter
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] in "._"):
                j += 1
            kind = "name"
        elif c in _DIGITS or (c == "." and text[i + 1 : i + 2] in tuple(_DIGITS)):
            j = i + 1
            while j < n and text[j] in _DIGITS:
                j += 1
            if c != "." and text[j : j + 1] == "." and text[j + 1 : j + 2] in tuple(_DIGITS):
                j += 1
                while j < n and text[j] in _DIGITS:
                    j += 1
            kind = "number"
        elif c in "'\"`":
            closing = "`" if c == "`" else "'\""
            j = next((k for k in range(i + 1, n) if text[k] in closing), -1)
            if j < 0:
                raise _Problem(n, f"unclosed {c!r} (opened at position {i})")
            j += 1
            kind = "quoted" if c == "`" else "string"
        else:
            op = next((op for op in _OPERATORS if text.startswith(op, i)), None)
            if op is None:
                raise _Problem(i, f"unexpected character {c!r}")
            j, kind = i + len(op), op
        tokens.append(_Token(kind, text[i:j], i))
        i = j
    return tokens


def _check_brackets(tokens: list[_Token], end: int) -> None:
    """Every bracket closed by its own kind, and nested at most MAX_DEPTH deep."""
    stack: list[_Token] = []
    for tok in tokens:
        if tok.kind in _CLOSING:
            stack.append(tok)
            if len(stack) > MAX_DEPTH:
                raise _Problem(tok.pos, f"brackets nested more than {MAX_DEPTH} deep")
        elif tok.kind in _CLOSING.values():
            if not stack:
                raise _Problem(tok.pos, f"unmatched {tok.text!r}: no bracket before it is open")
            opener = stack.pop()
            if _CLOSING[opener.kind] != tok.kind:
                raise _Problem(
                    tok.pos,
                    f"{tok.text!r} cannot close the {opener.text!r} at position {opener.pos}",
                )
    if stack:
        raise _Problem(end, f"unclosed {stack[-1].text!r} (opened at position {stack[-1].pos})")


@dataclass(frozen=True)
class _Node:
    """A parsed sub-expression: its character span and, for operators, the operator's offset."""

    start: int
    end: int
    op: int | None = None
    children: tuple[_Node, ...] = ()


class _Reader:
    """Recursive descent over formulae's grammar for one term, raising at the first misfit.

    ``end`` is the offset where the term's text stops (the next ``+``, ``|``, or the end of
    the formula): a missing operand at the end of the term is reported there.
    """

    def __init__(self, tokens: list[_Token], end: int) -> None:
        self.tokens = tokens
        self.end = end
        self.i = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def accept(self, *kinds: str) -> _Token | None:
        tok = self.peek()
        if tok is not None and tok.kind in kinds:
            self.i += 1
            return tok
        return None

    def term(self) -> _Node:
        """A whole term: one expression and nothing after it."""
        node = self.expression(inside_call=False)
        tok = self.peek()
        if tok is not None:
            raise self.unexpected(tok)
        return node

    def unexpected(self, tok: _Token) -> _Problem:
        if tok.kind in _BARS:
            return _Problem(
                tok.pos,
                f"{tok.text!r} outside parentheses: write a group-level term as "
                "(expr | factor), as in (1 | g)",
            )
        if tok.kind in _COMPARISONS:
            return _Problem(
                tok.pos,
                f"{tok.text!r} compares values, which is allowed only inside a function call, "
                "as in I(x > 0)",
            )
        if tok.kind == ",":
            return _Problem(tok.pos, "unexpected ',': separate terms with '+'")
        if tok.kind in ("name", "number", "string", "quoted", "(", "{"):
            return _Problem(
                tok.pos, f"unexpected {tok.text!r}: an operator such as '+' is missing before it"
            )
        return _Problem(tok.pos, f"unexpected {tok.text!r}")

    def expression(self, *, inside_call: bool) -> _Node:
        left = self.binary(0)
        if inside_call:  # comparisons are Python code for I() and friends
            while (op := self.accept(*_COMPARISONS)) is not None:
                right = self.binary(0, after=op)
                left = _Node(left.start, right.end, op.pos, (left, right))
        return left

    _LEVELS = (("+", "-"), ("*", "/"), (":",), ("**",))

    def binary(self, level: int, after: _Token | None = None) -> _Node:
        if level == len(self._LEVELS):
            return self.unary(after)
        left = self.binary(level + 1, after)
        while (op := self.accept(*self._LEVELS[level])) is not None:
            right = self.binary(level + 1, after=op)
            left = _Node(left.start, right.end, op.pos, (left, right))
        return left

    def unary(self, after: _Token | None) -> _Node:
        signs = []  # a loop, not recursion: "- - - x" may be long
        while (op := self.accept("+", "-")) is not None:
            signs.append(op)
        node = self.primary(signs[-1] if signs else after)
        for op in reversed(signs):
            node = _Node(op.pos, node.end, op.pos, (node,))
        return node

    def missing(self, after: _Token | None) -> _Problem:
        tok = self.peek()
        if tok is None:
            what = f"after {after.text!r}" if after is not None else "here"
            return _Problem(self.end, f"expected a term {what}")
        what = f" after {after.text!r}" if after is not None else ""
        return _Problem(tok.pos, f"expected a term{what}, found {tok.text!r}")

    def closing(self, opener: _Token, kind: str) -> _Token:
        tok = self.accept(kind)
        if tok is not None:
            return tok
        tok = self.peek()
        if tok is not None and tok.kind in _BARS:
            raise _Problem(
                opener.pos,
                "a group-level term (expr | factor) must be a term of its own, added with '+', "
                "as in 'y ~ x + (1 | g)'",
            )
        raise self.unexpected(tok) if tok is not None else _Problem(self.end, f"missing {kind!r}")

    def primary(self, after: _Token | None) -> _Node:
        tok = self.accept("name", "number", "string", "quoted")
        if tok is not None:
            if tok.kind == "name":
                return self.postfix(tok)
            return _Node(tok.pos, tok.end)
        opener = self.accept("(", "{")
        if opener is None:
            raise self.missing(after)
        if opener.kind == "(" and (tok := self.peek()) is not None and tok.kind == ")":
            raise _Problem(tok.pos, "empty parentheses: a term is missing inside them")
        inner = self.expression(inside_call=opener.kind == "{")
        close = self.closing(opener, _CLOSING[opener.kind])
        return _Node(opener.pos, close.end, None, (inner,))

    def postfix(self, name: _Token) -> _Node:
        """A column name, ``name[level]``, or calls ``f(args)``."""
        if (bracket := self.accept("[")) is not None:
            level = self.accept("name", "string")
            if level is None:
                at = self.peek()
                raise _Problem(
                    at.pos if at is not None else self.end,
                    f"a level in {name.text}[...] is a name or a quoted string, as in "
                    f"{name.text}[a]",
                )
            close = self.closing(bracket, "]")
            return _Node(name.pos, close.end)
        node = _Node(name.pos, name.end)
        while (opener := self.accept("(")) is not None:
            args: list[_Node] = []
            if self.accept(")") is None:
                while True:
                    args.append(self.argument(opener))
                    comma = self.accept(",")
                    if comma is None:
                        break
                    if (tok := self.peek()) is not None and tok.kind == ")":
                        raise _Problem(tok.pos, "expected an argument after ','")
                close = self.closing(opener, ")")
            else:
                close = self.tokens[self.i - 1]
            node = _Node(name.pos, close.end, None, tuple(args))
        return node

    def argument(self, opener: _Token) -> _Node:
        tok = self.peek()
        after = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
        if tok is not None and tok.kind == "name" and after is not None and after.kind == "=":
            self.i += 2  # keyword=value
            return self.expression(inside_call=True)
        if tok is not None and tok.kind == ",":
            raise _Problem(tok.pos, f"expected an argument after {opener.text!r}")
        return self.expression(inside_call=True)


def _formulae_reads(text: str) -> Exception | None:
    try:
        fm.model_description(text)
    except Exception as exc:  # formulae raises ParseError, ResolverError, TypeError, ...
        return exc
    return None


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _locate(text: str, root: _Node, exc: Exception) -> _Problem:
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
            return _Problem(at, f"formulae cannot read {piece!r}: {_describe(exc)}")


def _check_with_formulae(text: str, nodes: list[_Node]) -> None:
    """formulae parses the terms jointly; if it fails, find and point at the failing term."""
    joined = " + ".join(text[n.start : n.end] for n in nodes)
    exc = _formulae_reads(joined)
    if exc is None:
        return
    if isinstance(exc, RecursionError):
        raise _Problem(
            nodes[0].start,
            f"{len(nodes)} terms are more than formulae can read at once: use fewer terms",
        )
    for node in nodes:
        node_exc = _formulae_reads(text[node.start : node.end])
        if node_exc is not None:
            raise _locate(text, node, node_exc)
    raise _Problem(nodes[0].start, f"formulae cannot read {joined!r}: {_describe(exc)}")


def _split(tokens: list[_Token], sep: str) -> list[tuple[list[_Token], _Token | None]]:
    """Split at ``sep`` tokens outside every bracket: (tokens, the separator after them)."""
    parts: list[tuple[list[_Token], _Token | None]] = []
    depth, current = 0, []
    for tok in tokens:
        if tok.kind in _CLOSING:
            depth += 1
        elif tok.kind in _CLOSING.values():
            depth -= 1
        elif depth == 0 and tok.kind == sep:
            parts.append((current, tok))
            current = []
            continue
        current.append(tok)
    parts.append((current, None))
    return parts


def _group_term(text: str, tokens: list[_Token]) -> tuple[list[GroupTerm], _Node] | None:
    """Read ``( expr | factor )`` (or ``||``); None if ``tokens`` are not such a term."""
    if tokens[0].kind != "(" or tokens[-1].kind != ")":
        return None
    depth = 0
    for k, tok in enumerate(tokens):
        depth += tok.kind in _CLOSING
        depth -= tok.kind in _CLOSING.values()
        if depth == 0 and k < len(tokens) - 1:
            return None  # "(a) + (b)", "(1 | g):x": the first parenthesis closes early
    inner, close = tokens[1:-1], tokens[-1]
    depth, bars = 0, []
    for tok in inner:
        depth += tok.kind in _CLOSING
        depth -= tok.kind in _CLOSING.values()
        if depth == 0 and tok.kind in _BARS:
            bars.append(tok)
    if not bars:
        return None
    bar = bars[0]
    if len(bars) > 1:
        raise _Problem(
            bars[1].pos,
            f"a second {bars[1].text!r}: a group-level term reads (expr | factor), as in (1 | g)",
        )
    expr_tokens = [t for t in inner if t.pos < bar.pos]
    factor_tokens = [t for t in inner if t.pos > bar.pos]
    if not expr_tokens:
        raise _Problem(
            bar.pos,
            f"nothing before {bar.text!r}: a group-level term reads (expr | factor), as in (1 | g)",
        )
    if not factor_tokens:
        raise _Problem(
            close.pos,
            f"nothing after {bar.text!r}: name the grouping column, as in (1 | g)",
        )
    node = _Reader(expr_tokens, bar.pos).term()
    for k, tok in enumerate(factor_tokens):
        want_name = k % 2 == 0
        if want_name and tok.kind == "quoted" and any(c in tok.text for c in "/:"):
            raise _Problem(
                tok.pos,
                f"a grouping column named {tok.text} holds '/' or ':', which write nesting "
                "here: rename the column",
            )
        if want_name and tok.kind not in ("name", "quoted"):
            raise _Problem(
                tok.pos,
                f"a grouping factor is a column name, a/b (b nested in a) or a:b, got {tok.text!r}",
            )
        if not want_name and tok.kind not in ("/", ":"):
            raise _Problem(
                tok.pos,
                "a grouping factor is a column name, a/b (b nested in a) or a:b; "
                f"unexpected {tok.text!r}",
            )
    if len(factor_tokens) % 2 == 0:
        raise _Problem(close.pos, f"expected a column name after {factor_tokens[-1].text!r}")
    expr = text[expr_tokens[0].pos : expr_tokens[-1].end]
    levels = "".join(t.text.strip("`") for t in factor_tokens).split("/")
    correlated = bar.kind == "|"
    # (expr | a/b) is lme4's (expr | a) + (expr | a:b)
    terms = [GroupTerm(expr, ":".join(levels[: k + 1]), correlated) for k in range(len(levels))]
    return terms, node


def _is_offset(tokens: list[_Token]) -> bool:
    """Whether ``tokens`` are one whole call ``offset(expr)``."""
    if len(tokens) < 4 or tokens[0].text != "offset" or tokens[1].kind != "(":
        return False
    depth = 0
    for k, tok in enumerate(tokens[1:], start=1):
        depth += tok.kind in _CLOSING
        depth -= tok.kind in _CLOSING.values()
        if depth == 0:
            return k == len(tokens) - 1
    return False


def _refuse_offset(tokens: list[_Token], where: str) -> None:
    """``offset(...)`` anywhere but as a whole population-level term is refused."""
    for k, tok in enumerate(tokens[:-1]):
        if tok.kind == "name" and tok.text == "offset" and tokens[k + 1].kind == "(":
            raise _Problem(
                tok.pos,
                f"offset(...) must be {where}, as in 'y ~ x + offset(log(t)) + (1 | g)'",
            )


def _missing_tilde(tokens: list[_Token]) -> _Problem:
    if not tokens:
        return _Problem(0, f"the formula is empty: write 'response ~ terms', {_EXAMPLE}")
    at = tokens[1].pos if len(tokens) > 1 else tokens[0].end
    return _Problem(at, f"missing '~' between the response and the terms, {_EXAMPLE}")


def _parse(text: str) -> Formula:
    tokens = _tokenize(text)
    _check_brackets(tokens, len(text))
    tildes = [t for t in tokens if t.kind == "~"]
    if not tildes:
        raise _missing_tilde(tokens)
    if len(tildes) > 1:
        raise _Problem(
            tildes[1].pos, "a second '~': a formula has one, between the response and the terms"
        )
    tilde = tildes[0]
    lhs = [t for t in tokens if t.pos < tilde.pos]
    rhs = [t for t in tokens if t.pos > tilde.pos]
    if not lhs:
        raise _Problem(tilde.pos, f"the response is missing before '~', {_EXAMPLE}")
    response = text[lhs[0].pos : lhs[-1].end]
    if len(lhs) == 1 and lhs[0].kind == "quoted":  # `my y` ~ ...
        response = response[1:-1]
    elif len(lhs) > 1 or lhs[0].kind != "name" or not response.isidentifier():
        raise _Problem(
            lhs[0].pos,
            f"the response must be a single column name, got {response!r} (quote a name "
            "with spaces in backticks: `my y`)",
        )
    if not rhs:
        raise _Problem(len(text), f"expected terms after '~', {_EXAMPLE}")

    fixed: list[_Node] = []
    offsets: list[str] = []
    groups: list[GroupTerm] = []
    group_nodes: list[_Node] = []
    pieces = _split(rhs, "+")
    for k, (piece, plus) in enumerate(pieces):
        end = plus.pos if plus is not None else len(text)
        if not piece:
            if k == 0:
                raise _Problem(end, "expected a term before '+'")
            raise _Problem(end, "expected a term after '+'")
        read = _group_term(text, piece)
        if read is None and _is_offset(piece):
            inner = _Reader(piece[2:-1], piece[-1].pos).term()
            _check_with_formulae(text, [inner])
            offsets.append(text[inner.start : inner.end])
        elif read is None:
            _refuse_offset(piece, "a term of its own, added with '+'")
            fixed.append(_Reader(piece, end).term())
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
    except _Problem as problem:
        raise _syntax_error(text, problem.pos, problem.message) from None
