"""Expressions over point values, sandboxed and compiled once at load.

The language is Python expression syntax evaluated by simpleeval (no
``eval``): literals, arithmetic, comparisons, ``and``/``or``/``not``,
``x if c else y`` and calls of a fixed set of functions. Attribute access,
subscripts, comprehensions, lambdas, f-strings and names other than those
listed are refused at load, and an expression may hold at most
``MAX_NODES`` syntax nodes, so each evaluation costs a bounded amount of
work (simpleeval also caps powers and string sizes).

Points are read with ``value('DEVICE.KEY')``; the argument must be a string
literal, so the engine knows at load which points an expression reads.
``trigger`` is the value that fired the rule (``None`` for schedules).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from simpleeval import SimpleEval

MAX_NODES = 200
MAX_LENGTH = 1000
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "min": min,
    "max": max,
    "round": round,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
}
NAMES = {"trigger", "True", "False", "None"}
_ALLOWED = (
    ast.Expression, ast.Constant, ast.Name, ast.Load, ast.Call, ast.UnaryOp, ast.BinOp, ast.BoolOp,
    ast.Compare, ast.IfExp, ast.Tuple,
    ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
)  # fmt: skip


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
    return tree.body, frozenset(points)


class Expression:
    """A checked, parsed expression; ``evaluate`` runs it against current values."""

    __slots__ = ("_evaluator", "_tree", "points", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._tree, self.points = check_expression(text)
        self._evaluator = SimpleEval(functions=dict(FUNCTIONS), names={})

    def evaluate(self, read: Callable[[str], Any], trigger: Any = None) -> Any:
        """Evaluate with ``read(point)`` giving a point's current value (or None)."""
        evaluator = self._evaluator
        evaluator.functions["value"] = read
        evaluator.names = {"trigger": trigger, "True": True, "False": False, "None": None}
        return evaluator.eval(self.text, previously_parsed=self._tree)

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"
