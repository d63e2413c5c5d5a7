"""The formula's syntax, read token by token with the grammar formulae uses.

formulae reports no positions and silently ignores some trailing text (``y ~ x z`` would
be ``y ~ x``); reading the formula here first lets every syntax error name its character
offset (:func:`syntax_error`). :mod:`hierbayes.spec.formula` builds on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from hierbayes.errors import SpecError

__all__ = [
    "BARS",
    "CLOSING",
    "EXAMPLE",
    "MAX_DEPTH",
    "Node",
    "Problem",
    "Reader",
    "Token",
    "check_brackets",
    "syntax_error",
    "tokenize",
]

#: Deepest nesting of brackets read; formulae's recursive parser fails not far beyond.
MAX_DEPTH = 32

EXAMPLE = "as in 'y ~ 1 + x + (1 | g)'"
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
CLOSING = {"(": ")", "[": "]", "{": "}"}
BARS = ("|", "||")


class Problem(Exception):
    """A syntax error at character ``pos`` of the formula; :func:`parse` formats it."""

    def __init__(self, pos: int, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


def syntax_error(text: str, pos: int, message: str) -> SpecError:
    """The SpecError for a problem at offset ``pos``: the formula, the offset, a caret line.

    Tabs and line breaks are shown as spaces, so that the caret stays under its character.

    Examples
    --------
    >>> print(syntax_error("y ~ x +", 7, "expected a term after '+'"))
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
class Token:
    """A token of a formula: ``kind`` is "name", "number", "string", "quoted" or the operator."""

    kind: str
    text: str
    pos: int

    @property
    def end(self) -> int:
        return self.pos + len(self.text)


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens as formulae's scanner does, keeping each token's offset."""
    tokens: list[Token] = []
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
                raise Problem(n, f"unclosed {c!r} (opened at position {i})")
            j += 1
            kind = "quoted" if c == "`" else "string"
        else:
            op = next((op for op in _OPERATORS if text.startswith(op, i)), None)
            if op is None:
                raise Problem(i, f"unexpected character {c!r}")
            j, kind = i + len(op), op
        tokens.append(Token(kind, text[i:j], i))
        i = j
    return tokens


def check_brackets(tokens: list[Token], end: int) -> None:
    """Every bracket closed by its own kind, and nested at most MAX_DEPTH deep."""
    stack: list[Token] = []
    for tok in tokens:
        if tok.kind in CLOSING:
            stack.append(tok)
            if len(stack) > MAX_DEPTH:
                raise Problem(tok.pos, f"brackets nested more than {MAX_DEPTH} deep")
        elif tok.kind in CLOSING.values():
            if not stack:
                raise Problem(tok.pos, f"unmatched {tok.text!r}: no bracket before it is open")
            opener = stack.pop()
            if CLOSING[opener.kind] != tok.kind:
                raise Problem(
                    tok.pos,
                    f"{tok.text!r} cannot close the {opener.text!r} at position {opener.pos}",
                )
    if stack:
        raise Problem(end, f"unclosed {stack[-1].text!r} (opened at position {stack[-1].pos})")


@dataclass(frozen=True)
class Node:
    """A parsed sub-expression: its character span and, for operators, the operator's offset."""

    start: int
    end: int
    op: int | None = None
    children: tuple[Node, ...] = ()


class Reader:
    """Recursive descent over formulae's grammar for one term, raising at the first misfit.

    ``end`` is the offset where the term's text stops (the next ``+``, ``|``, or the end of
    the formula): a missing operand at the end of the term is reported there.
    """

    def __init__(self, tokens: list[Token], end: int) -> None:
        self.tokens = tokens
        self.end = end
        self.i = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def accept(self, *kinds: str) -> Token | None:
        tok = self.peek()
        if tok is not None and tok.kind in kinds:
            self.i += 1
            return tok
        return None

    def term(self) -> Node:
        """A whole term: one expression and nothing after it."""
        node = self.expression(inside_call=False)
        tok = self.peek()
        if tok is not None:
            raise self.unexpected(tok)
        return node

    def unexpected(self, tok: Token) -> Problem:
        if tok.kind in BARS:
            return Problem(
                tok.pos,
                f"{tok.text!r} outside parentheses: write a group-level term as "
                "(expr | factor), as in (1 | g)",
            )
        if tok.kind in _COMPARISONS:
            return Problem(
                tok.pos,
                f"{tok.text!r} compares values, which is allowed only inside a function call, "
                "as in I(x > 0)",
            )
        if tok.kind == ",":
            return Problem(tok.pos, "unexpected ',': separate terms with '+'")
        if tok.kind in ("name", "number", "string", "quoted", "(", "{"):
            return Problem(
                tok.pos, f"unexpected {tok.text!r}: an operator such as '+' is missing before it"
            )
        return Problem(tok.pos, f"unexpected {tok.text!r}")

    def expression(self, *, inside_call: bool) -> Node:
        left = self.binary(0)
        if inside_call:  # comparisons are Python code for I() and friends
            while (op := self.accept(*_COMPARISONS)) is not None:
                right = self.binary(0, after=op)
                left = Node(left.start, right.end, op.pos, (left, right))
        return left

    _LEVELS = (("+", "-"), ("*", "/"), (":",), ("**",))

    def binary(self, level: int, after: Token | None = None) -> Node:
        if level == len(self._LEVELS):
            return self.unary(after)
        left = self.binary(level + 1, after)
        while (op := self.accept(*self._LEVELS[level])) is not None:
            right = self.binary(level + 1, after=op)
            left = Node(left.start, right.end, op.pos, (left, right))
        return left

    def unary(self, after: Token | None) -> Node:
        signs = []  # a loop, not recursion: "- - - x" may be long
        while (op := self.accept("+", "-")) is not None:
            signs.append(op)
        node = self.primary(signs[-1] if signs else after)
        for op in reversed(signs):
            node = Node(op.pos, node.end, op.pos, (node,))
        return node

    def missing(self, after: Token | None) -> Problem:
        tok = self.peek()
        if tok is None:
            what = f"after {after.text!r}" if after is not None else "here"
            return Problem(self.end, f"expected a term {what}")
        what = f" after {after.text!r}" if after is not None else ""
        return Problem(tok.pos, f"expected a term{what}, found {tok.text!r}")

    def closing(self, opener: Token, kind: str) -> Token:
        tok = self.accept(kind)
        if tok is not None:
            return tok
        tok = self.peek()
        if tok is not None and tok.kind in BARS:
            raise Problem(
                opener.pos,
                "a group-level term (expr | factor) must be a term of its own, added with '+', "
                "as in 'y ~ x + (1 | g)'",
            )
        raise self.unexpected(tok) if tok is not None else Problem(self.end, f"missing {kind!r}")

    def primary(self, after: Token | None) -> Node:
        tok = self.accept("name", "number", "string", "quoted")
        if tok is not None:
            if tok.kind == "name":
                return self.postfix(tok)
            return Node(tok.pos, tok.end)
        opener = self.accept("(", "{")
        if opener is None:
            raise self.missing(after)
        if opener.kind == "(" and (tok := self.peek()) is not None and tok.kind == ")":
            raise Problem(tok.pos, "empty parentheses: a term is missing inside them")
        inner = self.expression(inside_call=opener.kind == "{")
        close = self.closing(opener, CLOSING[opener.kind])
        return Node(opener.pos, close.end, None, (inner,))

    def postfix(self, name: Token) -> Node:
        """A column name, ``name[level]``, or calls ``f(args)``."""
        if (bracket := self.accept("[")) is not None:
            level = self.accept("name", "string")
            if level is None:
                at = self.peek()
                raise Problem(
                    at.pos if at is not None else self.end,
                    f"a level in {name.text}[...] is a name or a quoted string, as in "
                    f"{name.text}[a]",
                )
            close = self.closing(bracket, "]")
            return Node(name.pos, close.end)
        node = Node(name.pos, name.end)
        while (opener := self.accept("(")) is not None:
            args: list[Node] = []
            if self.accept(")") is None:
                while True:
                    args.append(self.argument(opener))
                    comma = self.accept(",")
                    if comma is None:
                        break
                    if (tok := self.peek()) is not None and tok.kind == ")":
                        raise Problem(tok.pos, "expected an argument after ','")
                close = self.closing(opener, ")")
            else:
                close = self.tokens[self.i - 1]
            node = Node(name.pos, close.end, None, tuple(args))
        return node

    def argument(self, opener: Token) -> Node:
        tok = self.peek()
        after = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
        if tok is not None and tok.kind == "name" and after is not None and after.kind == "=":
            self.i += 2  # keyword=value
            return self.expression(inside_call=True)
        if tok is not None and tok.kind == ",":
            raise Problem(tok.pos, f"expected an argument after {opener.text!r}")
        return self.expression(inside_call=True)
