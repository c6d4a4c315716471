"""Arithmetic for the `calculate` tool, never `eval`: the expression is parsed by Python's `ast` and only
numbers, + - * / // % **, unary signs and brackets are evaluated; anything else (a name, a call, an
attribute, a string) is refused with the reason. Bounded: 200 characters, exponents up to 100, results
below 1e100, so no expression can hold the service's CPU or memory."""

from __future__ import annotations

import ast
import math
import operator
import re

ARITHMETIC = r"^[0-9+\-*/%(). ,_eE]{1,200}$"  # the characters an expression may hold
# what the ReAct schema lets a model write as calculate's input: numbers joined by operators, in brackets or
# not (at least one operator: "12.4.2.1." or a lone number is no calculation); written in the subset of
# regular expressions that llama.cpp compiles into a grammar (no "(?:", no "\d")
_NUMBER = r" *[(]* *-?[0-9]+([.][0-9]+)? *[)]*"
EXPRESSION = rf"^{_NUMBER}( *([*][*]|//|[-+*/%]){_NUMBER})+ *$"
MAX_CHARS = 200
MAX_EXPONENT = 100
MAX_MAGNITUDE = 1e100

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}


class CalcError(ValueError):
    """The expression is not plain arithmetic, or cannot be computed; the message says why."""


def calculate(expression: str) -> float | int:
    text = expression.strip().replace(",", "").replace("_", "")
    if not text:
        raise CalcError("empty expression")
    if len(text) > MAX_CHARS:
        raise CalcError(f"expression longer than {MAX_CHARS} characters")
    if not re.fullmatch(ARITHMETIC, text):
        raise CalcError(f"only numbers, + - * / // % ** and brackets are allowed: {expression[:60]!r}")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise CalcError(f"not an arithmetic expression: {expression[:60]!r}") from None
    value = _eval(tree.body)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def show(value: float | int) -> str:
    """A result as a person writes it: no float noise ("0.30000000000000004" is "0.3")."""
    if isinstance(value, int):
        return str(value)
    return f"{value:.10g}"


def _eval(node: ast.AST) -> float | int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return _bounded(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        value = _eval(node.operand)
        return _bounded(-value if isinstance(node.op, ast.USub) else value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalcError(f"exponent larger than {MAX_EXPONENT}")
        try:
            return _bounded(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise CalcError("division by zero") from None
        except (OverflowError, ValueError) as exc:
            raise CalcError(f"cannot compute: {exc}") from None
    raise CalcError(f"not arithmetic: {type(node).__name__}")


def _bounded(value: float | int | complex) -> float | int:
    if isinstance(value, complex):
        raise CalcError("the result is not a real number")
    if isinstance(value, float) and not math.isfinite(value) or abs(value) >= MAX_MAGNITUDE:
        raise CalcError("the result is too large")
    return value
