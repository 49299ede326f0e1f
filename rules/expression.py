"""Expressions over point values, sandboxed and compiled once at load.

The language is Python expression syntax evaluated by simpleeval (no
``eval``): literals, tuples, arithmetic, comparisons, ``and``/``or``/``not``,
``x if c else y`` and calls of a fixed set of functions. Attribute access,
subscripts, comprehensions, lambdas, f-strings and names other than those
listed are refused at load, and an expression may hold at most
``MAX_NODES`` syntax nodes.

Every operation that could build a large value checks its operands before
it runs: numbers stay within ``MAX_INT_BITS`` bits, strings within
``MAX_STRING`` characters, tuples within ``MAX_ITEMS`` items (and are never
repeated), ``%`` formatting takes widths of at most ``MAX_FORMAT_WIDTH``.
With at most ``MAX_NODES`` such operations, each evaluation costs a small,
bounded amount of work. Parts of an expression that read no point are
computed once at load, so one that is too large (``4000000 ** 4000000``)
is a configuration error, not a failure at run time.

Points are read with ``value('DEVICE.KEY')``; the argument must be a string
literal, so the engine knows at load which points an expression reads.
``trigger`` is the value that fired the rule (``None`` for schedules).
"""

from __future__ import annotations

import ast
import operator as op
import re
from collections.abc import Callable
from typing import Any

from simpleeval import DEFAULT_OPERATORS, SimpleEval

MAX_NODES = 200
MAX_LENGTH = 1000
MAX_INT_BITS = 4096  # integers up to about 10**1233
MAX_STRING = 10_000  # characters (or bytes) of a string an expression builds
MAX_ITEMS = 1000  # items of a tuple an expression builds
MAX_FORMAT_WIDTH = 100  # width or precision of a '%' conversion
MAX_ROUND_DIGITS = 1000  # round(x, n) with -1000 <= n <= 1000
NAMES = {"trigger", "True", "False", "None"}
_ALLOWED = (
    ast.Expression, ast.Constant, ast.Name, ast.Load, ast.Call, ast.UnaryOp, ast.BinOp, ast.BoolOp,
    ast.Compare, ast.IfExp, ast.Tuple,
    ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
)  # fmt: skip
_TEXT = (str, bytes)
_CONVERSION = re.compile(rb"%(?:\([^)]*\))?[#0 +-]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?.", re.DOTALL)


class TooLarge(ValueError):
    """An operation would build a number, string or tuple beyond the limits (refused before it runs)."""


def _int(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise TooLarge(f"a number of {value.bit_length()} bits (at most {MAX_INT_BITS})")
    return value


def _length(length: int, kind: type) -> None:
    if kind is tuple:
        if length > MAX_ITEMS:
            raise TooLarge(f"a tuple of {length} items (at most {MAX_ITEMS})")
    elif length > MAX_STRING:
        raise TooLarge(f"a string of {length} characters (at most {MAX_STRING})")


def _sized(value: Any) -> Any:
    if isinstance(value, (*_TEXT, tuple)):
        _length(len(value), type(value))
    return _int(value)


def add(a: Any, b: Any) -> Any:
    if isinstance(a, (*_TEXT, tuple)) and type(a) is type(b):
        _length(len(a) + len(b), type(a))
    return _int(a + b)


def sub(a: Any, b: Any) -> Any:
    return _int(a - b)


def mul(a: Any, b: Any) -> Any:
    for sequence, times in ((a, b), (b, a)):
        if isinstance(times, int):
            if isinstance(sequence, tuple):
                raise TooLarge("a tuple cannot be repeated")
            if isinstance(sequence, _TEXT):
                _length(len(sequence) * max(times, 0), str)
    if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() - 1 > MAX_INT_BITS:
        raise TooLarge(f"a product of {a.bit_length()}- and {b.bit_length()}-bit numbers (at most {MAX_INT_BITS} bits)")
    return _int(a * b)


def power(a: Any, b: Any) -> Any:
    # |a| ** b has at least b * (bit_length(a) - 1) + 1 bits
    if isinstance(a, int) and isinstance(b, int) and b > 0 and b * (abs(a).bit_length() - 1) >= MAX_INT_BITS:
        raise TooLarge(f"{_short(a)} ** {_short(b)} has more than {MAX_INT_BITS} bits")
    return _int(a**b)


def lshift(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and a and b > 0 and a.bit_length() + b > MAX_INT_BITS:
        raise TooLarge(f"{_short(a)} << {_short(b)} has more than {MAX_INT_BITS} bits")
    return a << b


def mod(a: Any, b: Any) -> Any:
    """``%``: remainder, or printf-style formatting of a string with small widths."""
    if isinstance(a, _TEXT):
        _check_format(a)
        return _sized(a % b)
    return _int(a % b)


def _check_format(spec: str | bytes) -> None:
    raw = spec.encode("utf-8", "surrogatepass") if isinstance(spec, str) else spec
    for match in _CONVERSION.finditer(raw):
        for number in match.group(1, 2):
            if number == b"*" or (number and (len(number) > 3 or int(number) > MAX_FORMAT_WIDTH)):
                raise TooLarge(f"'%' formatting takes widths and precisions of at most {MAX_FORMAT_WIDTH} (no '*')")


def _round(number: Any, ndigits: Any = None) -> Any:
    if isinstance(ndigits, int) and abs(ndigits) > MAX_ROUND_DIGITS:
        raise TooLarge(f"round() takes at most {MAX_ROUND_DIGITS} digits; got {_short(ndigits)}")
    return round(number, ndigits)


def _to_int(value: Any, *base: Any) -> Any:
    if isinstance(value, _TEXT):
        _length(len(value), str)
    return _int(int(value, *base))


def _to_str(value: Any) -> Any:
    return value if isinstance(value, str) else _sized(str(value))


def _short(number: int) -> str:
    if number.bit_length() > 64:
        return f"a {number.bit_length()}-bit number"
    return f"({number})" if number < 0 else str(number)


OPERATORS: dict[type, Callable[..., Any]] = {
    **DEFAULT_OPERATORS,
    ast.Add: add, ast.Sub: sub, ast.Mult: mul, ast.Pow: power, ast.LShift: lshift, ast.RShift: op.rshift,
    ast.Mod: mod, ast.FloorDiv: op.floordiv, ast.Div: op.truediv,
}  # fmt: skip
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "min": min,
    "max": max,
    "round": _round,
    "int": _to_int,
    "float": float,
    "str": _to_str,
    "bool": bool,
}


class BoundedEval(SimpleEval):
    """simpleeval with the size-checking operators and functions above, and tuples."""

    def __init__(self) -> None:
        super().__init__(operators=dict(OPERATORS), functions=dict(FUNCTIONS), names={})
        self.nodes[ast.Tuple] = self._eval_tuple

    def _eval_tuple(self, node: ast.Tuple) -> tuple[Any, ...]:
        return _sized(tuple(self._eval(element) for element in node.elts))


def check_expression(text: str) -> tuple[ast.expr, frozenset[str]]:
    """Parse ``text``; return its tree and the points (``DEVICE.KEY``) it reads.

    Raise ``ValueError`` saying what is not allowed."""
    if len(text) > MAX_LENGTH:
        raise ValueError(f"an expression may be at most {MAX_LENGTH} characters long")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"invalid expression: {exc.msg} at column {exc.offset}") from exc
    points: set[str] = set()
    count = 0
    for node in ast.walk(tree):
        count += 1
        if not isinstance(node, _ALLOWED):
            raise ValueError(f"{type(node).__name__} is not allowed in an expression")
        if isinstance(node, ast.Name) and node.id not in NAMES and node.id not in FUNCTIONS and node.id != "value":
            raise ValueError(f"unknown name {node.id!r}; use value('DEVICE.KEY') to read a point")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.keywords:
                raise ValueError(f"only plain calls of {', '.join(['value', *FUNCTIONS])} are allowed")
            if node.func.id == "value":
                if len(node.args) != 1 or not isinstance(node.args[0], ast.Constant) or not isinstance(node.args[0].value, str):
                    raise ValueError("value() takes one quoted point such as value('sim/meter.power')")
                device, dot, key = node.args[0].value.rpartition(".")
                if not (dot and device and key):
                    raise ValueError(f"expected a point as DEVICE.KEY in value(); got {node.args[0].value!r}")
                points.add(node.args[0].value)
    if count > MAX_NODES:
        raise ValueError(f"expression too long ({count} nodes, at most {MAX_NODES})")
    _check_constants(tree.body, BoundedEval())
    return tree.body, frozenset(points)


def _check_constants(node: ast.expr, evaluator: BoundedEval) -> None:
    """Compute each part that reads neither a point nor the trigger, and check
    each literal ``%`` format; refuse one that is too large.

    Other errors (``1 / 0``) are left for run time, where that part may never be reached."""
    reads = any(isinstance(sub, ast.Name) and sub.id in ("value", "trigger") for sub in ast.walk(node))
    try:
        if not reads:
            evaluator.names = {"True": True, "False": False, "None": None}
            evaluator.eval(ast.unparse(node), previously_parsed=node)
        elif (spec := _literal_format(node)) is not None:
            _check_format(spec)
    except TooLarge as exc:
        part = ast.unparse(node)
        where = "" if str(exc).startswith(part) else f"{part} is "
        raise ValueError(f"{where}too large to compute: {exc}") from exc
    except Exception:  # noqa: BLE001 - only the cost is checked at load
        pass
    if reads:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                _check_constants(child, evaluator)


def _literal_format(node: ast.expr) -> str | bytes | None:
    """The format of ``'literal' % ...``, else None."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant):
        spec = node.left.value
        return spec if isinstance(spec, (str, bytes)) else None
    return None


class Expression:
    """A checked, parsed expression; ``evaluate`` runs it against current values."""

    __slots__ = ("_evaluator", "_tree", "points", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._tree, self.points = check_expression(text)
        self._evaluator = BoundedEval()

    def evaluate(self, read: Callable[[str], Any], trigger: Any = None) -> Any:
        """Evaluate with ``read(point)`` giving a point's current value (or None).

        Raise ``TooLarge`` when an operation would exceed the limits."""
        evaluator = self._evaluator
        evaluator.functions["value"] = read
        evaluator.names = {"trigger": trigger, "True": True, "False": False, "None": None}
        return evaluator.eval(self.text, previously_parsed=self._tree)

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"
