"""`log --where "accuracy>0.95 and C<1"`: a small expression language over a version's metrics, params
and metadata, parsed here into a tree and evaluated by walking it (never `eval`).

    expr    := term ("or" term)*
    term    := factor ("and" factor)*
    factor  := "not" factor | compare
    compare := value (("<" | "<=" | ">" | ">=" | "=" | "==" | "!=") value)?
    value   := NUMBER | 'string' | "string" | true | false | NAME | `any name` | "(" expr ")"

A NAME is a metric (dotted names reach nested ones), else a param, else a top-level metadata field;
`metrics.x` and `params.x` say which. Numbers compare with numbers, strings with strings, booleans with
booleans; any other pairing (or a name the version lacks) is false, so `not (C<1)` keeps versions without C.
A bare NAME is true when the version has it and it is true, non-zero or non-empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Union

from ..errors import BadInput
from ..store.metadata import is_number
from .compare import flatten_metrics

MAX_QUERY_CHARS = 2000
MAX_DEPTH = 50
OPERATORS = {"<", "<=", ">", ">=", "=", "==", "!="}
_KEYWORDS = {"and", "or", "not", "true", "false"}
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?![A-Za-z_])
    | (?P<str>'[^']*'|"[^"]*")
    | `(?P<quoted>[^`]+)`
    | (?P<op><=|>=|==|!=|<|>|=)
    | (?P<paren>[()])
    | (?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)
    )""",
    re.X,
)


def _error(message: str) -> BadInput:
    return BadInput(message, opt=("--where", "where"))


@dataclass(frozen=True)
class Name:
    name: str


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Compare:
    left: Node
    op: str
    right: Node


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and", "or"
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    part: Node


Node = Union[Name, Literal, Compare, BoolOp, Not]


def _tokens(text: str) -> list[tuple[str, Any, int]]:
    """(kind, value, column) per token; anything unrecognised is refused with its column."""
    out: list[tuple[str, Any, int]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            column = pos + len(text[pos:]) - len(text[pos:].lstrip()) + 1
            raise _error(f"{{opt}}: unexpected {text[column - 1]!r} at column {column} of {text!r}")
        kind = match.lastgroup or ""
        value: Any = match.group(kind)
        column = match.start(kind) + 1
        if kind == "num":
            value = float(value) if any(c in value for c in ".eE") else int(value)
        elif kind == "str":
            value = value[1:-1]
        elif kind == "quoted":
            kind = "name"
        elif kind == "name" and value.lower() in _KEYWORDS:
            kind, value = "word", value.lower()
        out.append((kind, value, column))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, Any, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def is_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token[0] == "word" and token[1] == word

    def fail(self, expected: str) -> BadInput:
        token = self.peek()
        where = f"{token[1]!r} at column {token[2]}" if token else "the end"
        return _error(f"{{opt}}: expected {expected}, found {where} in {self.text!r}")

    def parse(self) -> Node:
        if not self.tokens:
            raise _error("{opt}: the expression is empty")
        node = self.expr()
        if self.peek() is not None:
            raise self.fail("'and', 'or' or the end")
        return node

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error(f"{{opt}}: nested deeper than {MAX_DEPTH} levels")
        parts = [self.term()]
        while self.is_word("or"):
            self.i += 1
            parts.append(self.term())
        self.depth -= 1
        return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts))

    def term(self) -> Node:
        parts = [self.factor()]
        while self.is_word("and"):
            self.i += 1
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    def factor(self) -> Node:
        if self.is_word("not"):
            self.i += 1
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise _error(f"{{opt}}: nested deeper than {MAX_DEPTH} levels")
            node = Not(self.factor())
            self.depth -= 1
            return node
        left = self.value()
        token = self.peek()
        if token is not None and token[0] == "op":
            self.i += 1
            return Compare(left, "==" if token[1] == "=" else token[1], self.value())
        return left

    def value(self) -> Node:
        token = self.peek()
        if token is None:
            raise self.fail("a name, a number or a string")
        kind, value, _ = token
        if kind == "paren" and value == "(":
            self.i += 1
            node = self.expr()
            closing = self.peek()
            if closing is None or closing[:2] != ("paren", ")"):
                raise self.fail("')'")
            self.i += 1
            return node
        if kind in ("num", "str"):
            self.i += 1
            return Literal(value)
        if kind == "word" and value in ("true", "false"):
            self.i += 1
            return Literal(value == "true")
        if kind == "name":
            self.i += 1
            return Name(value)
        raise self.fail("a name, a number or a string")


@dataclass(frozen=True)
class Query:
    """A parsed `--where` expression: `matches(meta)` per version, `names` to check against the store."""

    text: str
    root: Node

    @property
    def names(self) -> list[str]:
        found: list[str] = []

        def walk(node: Node) -> None:
            if isinstance(node, Name):
                found.append(node.name)
            elif isinstance(node, Compare):
                walk(node.left)
                walk(node.right)
            elif isinstance(node, BoolOp):
                for part in node.parts:
                    walk(part)
            elif isinstance(node, Not):
                walk(node.part)

        walk(self.root)
        return list(dict.fromkeys(found))

    def matches(self, meta: dict[str, Any]) -> bool:
        return _truth(_eval(self.root, fields(meta)))


def parse(text: str) -> Query:
    """Parse a `--where` expression; BadInput (naming the column) when it is not one."""
    if len(text) > MAX_QUERY_CHARS:
        raise _error(f"{{opt}}: the expression is longer than {MAX_QUERY_CHARS} characters")
    return Query(text, _Parser(text).parse())


_MISSING = object()


def fields(meta: dict[str, Any]) -> dict[str, Any]:
    """The names a query can use for one version: top-level fields, then params, then metrics (which win),
    plus `metrics.x` / `params.x` spelled out."""
    metrics = flatten_metrics(meta.get("metrics") or {})
    params = flatten_metrics(meta.get("params") or {})
    out: dict[str, Any] = {k: v for k, v in meta.items() if not isinstance(v, (dict, list))}
    out.update(params)
    out.update(metrics)
    out.update({f"params.{k}": v for k, v in params.items()})
    out.update({f"metrics.{k}": v for k, v in metrics.items()})
    return out


def _eval(node: Node, values: dict[str, Any]) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Name):
        return values.get(node.name, _MISSING)
    if isinstance(node, Not):
        return not _truth(_eval(node.part, values))
    if isinstance(node, BoolOp):
        if node.op == "and":
            return all(_truth(_eval(p, values)) for p in node.parts)
        return any(_truth(_eval(p, values)) for p in node.parts)
    return _compare(_eval(node.left, values), node.op, _eval(node.right, values))


def _truth(value: Any) -> bool:
    return value is not _MISSING and bool(value)


def _compare(a: Any, op: str, b: Any) -> bool:
    if is_number(a) and is_number(b):
        x, y = float(a), float(b)
    elif isinstance(a, str) and isinstance(b, str):
        x, y = a, b  # type: ignore[assignment]
    elif isinstance(a, bool) and isinstance(b, bool) and op in ("==", "!="):
        return (a == b) == (op == "==")
    else:
        return False
    if op == "==":
        return x == y
    if op == "!=":
        return x != y
    if op == "<":
        return x < y
    if op == "<=":
        return x <= y
    if op == ">":
        return x > y
    return x >= y
