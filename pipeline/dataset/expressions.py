"""Features as data: `preprocess.features` maps a new column's name to an expression over the
houses' numeric columns, evaluated here by a small interpreter that runs no other code (a params
file is data: no attribute, subscript, import or call but the few functions below).

An expression may use numbers, the competition's numeric columns, the engineered ones (with
`preprocess.engineered_features`), features defined before it, `+ - * / **`, comparisons (1.0 or
0.0), and log1p, sqrt, abs, min(a, b), max(a, b). A blank cell stays blank (mean-imputed later).
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from pipeline.common.errors import PipelineError

MAX_FEATURES = 100  # features in all (each a column of every encoding; checked in about a second)
MAX_LENGTH = 300  # characters of one expression
MAX_NODES = 60    # its parse tree's nodes
MAX_POWER = 4     # ** takes a constant exponent within +-4
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")
FUNCTIONS = {"log1p": np.log1p, "sqrt": np.sqrt, "abs": np.abs}
PAIRS = {"min": np.fmin, "max": np.fmax}  # a blank on one side gives the other
OPERATORS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}
COMPARISONS = {ast.Gt: np.greater, ast.GtE: np.greater_equal, ast.Lt: np.less,
               ast.LtE: np.less_equal, ast.Eq: np.equal, ast.NotEq: np.not_equal}


def _fail(name: str, message: str) -> None:
    raise PipelineError(f"params.yaml: preprocess.features.{name} {message}; fix it in "
                        "params.yaml (docs/features.md)")


def _names(node: ast.AST, name: str) -> set[str]:
    """The column names an expression reads; refuses any construct it does not allow."""
    used = set()
    called = {id(sub.func) for sub in ast.walk(node) if isinstance(sub, ast.Call)}
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            if sub.id not in FUNCTIONS and sub.id not in PAIRS:
                used.add(sub.id)
            elif id(sub) not in called:
                _fail(name, f"uses the function {sub.id} without calling it; write "
                      f"{sub.id}({'a, b' if sub.id in PAIRS else 'x'})")
        elif isinstance(sub, ast.Call):
            func = sub.func.id if isinstance(sub.func, ast.Name) else None
            wanted = 1 if func in FUNCTIONS else 2 if func in PAIRS else None
            if wanted is None or len(sub.args) != wanted or sub.keywords:
                _fail(name, f"calls {ast.unparse(sub.func)}(); only log1p(x), sqrt(x), abs(x), "
                      "min(a, b) and max(a, b) are allowed")
        elif isinstance(sub, ast.BinOp):
            if isinstance(sub.op, ast.Pow):
                exponent = sub.right
                if isinstance(exponent, ast.UnaryOp) and isinstance(exponent.op,
                                                                   ast.USub | ast.UAdd):
                    exponent = exponent.operand  # x ** -1: the sign is the number's
                if not (isinstance(exponent, ast.Constant) and type(exponent.value) in (int, float)
                        and abs(exponent.value) <= MAX_POWER):
                    _fail(name, f"raises to {ast.unparse(sub.right)}; ** takes a number "
                          f"within +-{MAX_POWER} (not a column or an expression)")
            elif type(sub.op) not in OPERATORS:
                _fail(name, f"uses {ast.unparse(sub)}; only + - * / ** are allowed")
        elif isinstance(sub, ast.Compare):
            if len(sub.ops) != 1 or type(sub.ops[0]) not in COMPARISONS:
                _fail(name, "compares with more than one operator or with one not allowed")
        elif isinstance(sub, ast.Constant):
            if type(sub.value) not in (int, float):
                _fail(name, f"holds {sub.value!r}; only numbers and column names are allowed")
        elif not isinstance(sub, ast.Expression | ast.UnaryOp | ast.USub | ast.UAdd | ast.Load
                            | ast.operator | ast.cmpop):
            _fail(name, f"uses {type(sub).__name__.lower()} syntax; only arithmetic on columns "
                  "is allowed")
    return used


def parse(features, known: set[str] | None) -> tuple[tuple[str, str], ...]:
    """The checked (name, expression) pairs of `preprocess.features`, in order: each name new,
    each expression within the limits and reading only `known` columns or earlier features
    (None: the names are not checked, as where the columns are not known yet)."""
    if not isinstance(features, dict | tuple | list):
        raise PipelineError("params.yaml: preprocess.features must be a mapping of NAME: "
                            "expression, e.g. {LotPerRoom: LotArea / TotRmsAbvGrd}")
    from pipeline.dataset.schema import RESERVED

    pairs = list(features.items()) if isinstance(features, dict) else [tuple(p) for p in features]
    if len(pairs) > MAX_FEATURES:
        raise PipelineError(f"params.yaml: preprocess.features has {len(pairs)} features, more "
                            f"than the {MAX_FEATURES} allowed; keep the ones that help "
                            "(docs/features.md)")
    defined = set(known or ())
    out = []
    for name, text in pairs:
        name = str(name)
        if not NAME.match(name):
            _fail(name, "is not a column name (letters, digits and _, starting with a letter)")
        if name in RESERVED or name in defined or name in {n for n, _ in out}:
            _fail(name, "names a column that already exists; choose a new name")
        if not isinstance(text, str | int | float) or isinstance(text, bool):
            _fail(name, f"must be an expression (text), got {text!r}")
        text = str(text)
        if len(text) > MAX_LENGTH:
            _fail(name, f"is longer than {MAX_LENGTH} characters")
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as exc:
            _fail(name, f"is not an expression ({exc.msg} in {text!r})")
        if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
            _fail(name, f"has more than {MAX_NODES} parts; split it into several features")
        unknown = sorted(_names(tree, name) - defined)
        if unknown and known is not None:
            _fail(name, f"reads {', '.join(unknown)}, not a numeric column (nor an engineered "
                  "one, nor a feature defined before it)")
        defined.add(name)
        out.append((name, text))
    return tuple(out)


def _evaluate(node: ast.AST, columns) -> np.ndarray | float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, columns)
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return np.asarray(columns[node.id], dtype=np.float64)
    if isinstance(node, ast.UnaryOp):
        value = _evaluate(node.operand, columns)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, columns), _evaluate(node.right, columns)
        if isinstance(node.op, ast.Pow):
            return np.power(left, right)
        return OPERATORS[type(node.op)](left, right)
    if isinstance(node, ast.Compare):
        left, right = _evaluate(node.left, columns), _evaluate(node.comparators[0], columns)
        result = COMPARISONS[type(node.ops[0])](left, right).astype(np.float64)
        return np.where(np.isnan(left) | np.isnan(right), np.nan, result)
    func = node.func.id
    args = [_evaluate(a, columns) for a in node.args]
    return (FUNCTIONS[func] if func in FUNCTIONS else PAIRS[func])(*args)


def evaluate(name: str, text: str, columns: pd.DataFrame, ids=None, n: int | None = None
             ) -> np.ndarray:
    """The feature's values for every house (float, NaN where an input is blank); one line if
    any house gets an infinite or undefined value (a division by zero, log1p of -1 or less).
    `columns` is a frame or any mapping of column name to values (then `n` gives the rows)."""
    n = len(columns) if n is None else n  # a frame's rows
    tree = ast.parse(text, mode="eval")
    with np.errstate(all="ignore"):
        values = np.broadcast_to(np.asarray(_evaluate(tree, columns), dtype=np.float64),
                                 (n,)).copy()
        inputs_blank = np.zeros(n, dtype=bool)
        for used in _names(tree, name):
            inputs_blank |= np.isnan(np.asarray(columns[used], dtype=np.float64))
    bad = ~np.isfinite(values) & ~inputs_blank
    if bad.any():
        where = (f"Id {np.asarray(ids)[bad][:5].tolist()}" if ids is not None
                 else f"rows {(np.flatnonzero(bad)[:5] + 1).tolist()}")
        _fail(name, f"is infinite or undefined for {int(bad.sum())} house(s) ({where}): a "
              "division by zero or log1p/sqrt of a negative number? guard it, e.g. "
              "x / max(y, 1)")
    return values
