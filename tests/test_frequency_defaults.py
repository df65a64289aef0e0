"""No frequency-dependent default outside the frequency profile: a fixed period, step or window fails here.

Two scans: the Python sources (argument defaults and constants whose name says period/step/window/...,
and the hourly numbers 24, 48, 168, 336, 8760 anywhere outside ``ts_kedro/frequency.py``) and the shipped
parameters (a key that names a period, step, window, lookback or lag must be null = derived).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "ts_kedro"
PROFILE_MODULE = SRC / "frequency.py"
# names of a period, a step, a window or a lookback (plural counts such as max_windows_per_series are not)
FREQUENCY_NAME = re.compile(
    r"(^|_)(season_length|seasonal_periods|periods?|steps?|window|lookback|input_size|horizon|lags?|tail)($|_)",
    re.IGNORECASE)
# A line may state a calendar fact (24 hours a day) rather than a default: it says so with this marker. In the
# benchmarks, a line may also state a dataset's published setup (M4 Hourly's horizon 48) or a count that is
# not a period.
CALENDAR_FACT = "# calendar fact"
FACT_MARKERS = (CALENDAR_FACT, "# dataset fact", "# not a period")
BENCHMARKS = ROOT / "benchmarks"
HOURLY_NUMBERS = {24, 48, 168, 336, 8760, 8766}
# Keys that match the name pattern but are not frequency-dependent (counts, the dataset's own horizon).
YAML_ALLOWED = {
    "panel.horizon",  # the dataset's own horizon: one of the two things a user must give
    "backtest.n_windows",  # a count of origins, the same for every frequency
}


def _numeric(node: ast.AST) -> list[float]:
    """The numeric literals of a constant, or of a list/tuple of constants (booleans excluded)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return [node.value]
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [_numeric(element) for element in node.elts]
        return [v for vs in values for v in vs] if all(values) else []
    return []


def _python_violations(path: Path) -> list[str]:
    text = path.read_text()
    lines = text.splitlines()
    tree = ast.parse(text, filename=str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = [*args.posonlyargs, *args.args]
            pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            for arg, default in pairs:
                values = _numeric(default)
                if FREQUENCY_NAME.search(arg.arg) and any(v >= 2 for v in values):
                    found.append(f"{path.relative_to(ROOT)}:{default.lineno} default {arg.arg}={values}")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            values = _numeric(node.value) if node.value is not None else []
            if any(FREQUENCY_NAME.search(n) for n in names) and any(v >= 2 for v in values):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} constant {names}={values}")
        elif isinstance(node, ast.Constant) and id(node) not in docstrings and not isinstance(node.value, bool) \
                and isinstance(node.value, (int, float)) and node.value in HOURLY_NUMBERS \
                and not any(marker in lines[node.lineno - 1] for marker in FACT_MARKERS):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} hourly number {node.value}")
    return found


def test_no_frequency_literal_in_the_sources():
    violations = [v for path in sorted(SRC.rglob("*.py")) if path != PROFILE_MODULE for v in _python_violations(path)]
    assert not violations, "frequency-dependent literals outside ts_kedro/frequency.py:\n" + "\n".join(violations)


def test_no_hourly_number_in_the_benchmarks():
    """The benchmarks take every frequency-dependent value from the profile too (a dataset's published horizon
    is a fact of that dataset, marked as such)."""
    violations = [v for path in sorted(BENCHMARKS.glob("*.py")) for v in _python_violations(path)]
    assert not violations, "frequency-dependent literals in benchmarks/:\n" + "\n".join(violations)


def _yaml_violations(tree, prefix: str = "") -> list[str]:
    found = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, (dict, list)) and not (isinstance(value, list) and all(
                    isinstance(v, (int, float)) for v in value)):
                found += _yaml_violations(value, name)
                continue
            numbers = value if isinstance(value, list) else [value]
            numeric = [v for v in numbers if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if FREQUENCY_NAME.search(str(key)) and numeric and name not in YAML_ALLOWED and \
                    not name.endswith(".n_windows"):
                found.append(f"{name} = {value!r}")
    elif isinstance(tree, list):
        for i, item in enumerate(tree):
            found += _yaml_violations(item, f"{prefix}[{i}]")
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "conf" / "base").glob("parameters*.yml")), ids=lambda p: p.name)
def test_no_frequency_literal_in_the_shipped_parameters(path):
    violations = _yaml_violations(yaml.safe_load(path.read_text()) or {})
    assert not violations, f"{path.name}: frequency-dependent values must be null (derived): {violations}"


def test_the_scan_catches_what_it_is_for(tmp_path):
    """The scanner itself: an hourly default and an hourly constant are found, a derived one is not."""
    module = SRC / "_scan_probe.py"
    source = ("def f(season_length=24, horizon=None):\n    return season_length\n"
              "LOOKBACK_STEPS = 14\nx = 7 * 24\n")
    module.write_text(source)
    try:
        found = _python_violations(module)
    finally:
        module.unlink()
    assert any("season_length=[24]" in v for v in found) and any("LOOKBACK_STEPS" in v for v in found)
    assert sum("hourly number 24" in v for v in found) == 2
    assert _yaml_violations({"backtest": {"step": 48}, "panel": {"horizon": 8}}) == ["backtest.step = 48"]
