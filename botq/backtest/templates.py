"""Strategy templates with {parameters}, and grids of named variants for parameter sweeps.

    t = Template('''
    [meta]
    name = "ema cross"
    [[actions]]
    type = "open_long"
    amount = "100%"
      [[actions.triggers]]
      indicator = "ema_{fast}"
      operator = "cross_above"
      target = "ema_{slow}"
    ...''')
    variants = grid(t, {"fast": [5, 12], "slow": [26, 50]}, where=lambda p: p["fast"] < p["slow"])
    [v.name for v in variants]   # ['ema cross (fast=5, slow=26)', ...]

A placeholder ``{name}`` may appear in any string field. A field that is exactly one
placeholder takes the parameter's value as is (so ``max_count = "{n}"`` becomes the number
n); elsewhere the value is written into the text (``"ema_{fast}"`` -> ``"ema_12"``). A variant
is named by the template's name with its placeholders filled, or, if the name has none, by the
name followed by the parameter values.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from botq.backtest.strategy import Strategy, load_toml
from botq.errors import Problem, StrategyError

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def ema_cross(timeframe: str | None = None) -> str:
    """The EMA crossover template (parameters `fast` and `slow`) as TOML text: all in on
    ema_{fast} crossing above ema_{slow}, all out on the cross below; both crosses read on
    closed candles of `timeframe` when given. What the demo, the tests and the benchmarks run.
    """
    on = f'\n  timeframe = "{timeframe}"' if timeframe else ""
    return f"""
[meta]
name = "EMA cross"

[[actions]]
type = "open_long"
amount = "100%"
  [[actions.triggers]]
  indicator = "ema_{{fast}}"
  operator = "cross_above"
  target = "ema_{{slow}}"{on}

[[actions]]
type = "sell"
amount = "100%"
  [[actions.triggers]]
  indicator = "ema_{{fast}}"
  operator = "cross_below"
  target = "ema_{{slow}}"{on}
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, float):
        return format(v, "f").rstrip("0").rstrip(".")
    return str(v)


def _fill(obj: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(obj, str):
        if "{" not in obj:  # most strings of a template: no regex needed
            return obj
        whole = _PLACEHOLDER.fullmatch(obj)
        if whole and whole.group(1) in values:
            return values[whole.group(1)]
        return _PLACEHOLDER.sub(
            lambda m: _fmt(values[m.group(1)]) if m.group(1) in values else m.group(0), obj
        )
    if isinstance(obj, Mapping):
        return {k: _fill(v, values) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_fill(v, values) for v in obj]
    return obj


def _names(obj: Any, out: dict[str, None]) -> None:
    if isinstance(obj, str):
        for m in _PLACEHOLDER.finditer(obj):
            out[m.group(1)] = None
    elif isinstance(obj, Mapping):
        for v in obj.values():
            _names(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _names(v, out)


class Template:
    """A strategy dict (or TOML text / file) whose string fields may hold {placeholders}."""

    __slots__ = ("parameters", "spec")

    def __init__(self, spec: Strategy | Mapping[str, Any] | str | Path) -> None:
        if isinstance(spec, Strategy):
            spec = spec.to_dict()
        self.spec: dict[str, Any] = (
            _fill(spec, {}) if isinstance(spec, Mapping) else load_toml(spec)
        )
        found: dict[str, None] = {}
        _names(self.spec, found)
        self.parameters: tuple[str, ...] = tuple(found)

    def __repr__(self) -> str:
        return f"Template({self.name!r}, parameters={list(self.parameters)})"

    @property
    def name(self) -> str:
        """The template's meta name (placeholders unfilled)."""
        meta = self.spec.get("meta", self.spec)
        return str(meta.get("name", "")) if isinstance(meta, Mapping) else ""

    def problems(self, values: Mapping[str, Any]) -> list[Problem]:
        """Parameters missing from or unknown to this template."""
        out = [
            Problem("REQUIRED", f"parameters.{p}", f"template parameter {p!r} needs a value")
            for p in self.parameters
            if p not in values
        ]
        out += [
            Problem(
                "UNKNOWN_FIELD",
                f"parameters.{k}",
                f"the template has no parameter {k!r} (it has: {', '.join(self.parameters)})",
            )
            for k in values
            if k not in self.parameters
        ]
        return out

    def render_dict(self, **values: Any) -> dict[str, Any]:
        """The filled-in strategy dict, named after the values (not yet validated)."""
        problems = self.problems(values)
        if problems:
            raise StrategyError(problems)
        spec = _fill(self.spec, values)
        meta = spec.get("meta") if "meta" in spec else spec
        name = self.name
        if isinstance(meta, dict) and values and not _PLACEHOLDER.search(name):
            label = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
            meta["name"] = f"{name} ({label})" if name else label
        return spec

    def render(self, **values: Any) -> Strategy:
        """One validated Strategy with the placeholders filled."""
        return Strategy.from_dict(self.render_dict(**values))


def grid(
    template: Template | Strategy | Mapping[str, Any] | str | Path,
    params: Mapping[str, Iterable[Any]],
    *,
    where: Callable[[dict[str, Any]], bool] | None = None,
) -> list[Strategy]:
    """Every combination of `params` (a Cartesian product, in order) as a named Strategy.

    `where(values)` keeps only the combinations it accepts (e.g. fast < slow). Raises
    StrategyError listing the problems of every bad variant, paths prefixed by
    ``variants[i]``.
    """
    tpl = template if isinstance(template, Template) else Template(template)
    keys = list(params)
    problems = tpl.problems(dict.fromkeys(keys))
    if problems:
        raise StrategyError(problems)
    columns: list[Sequence[Any]] = [list(params[k]) for k in keys]
    out: list[Strategy] = []
    for i, combo in enumerate(itertools.product(*columns)):
        values = dict(zip(keys, combo, strict=True))
        if where is not None and not where(values):
            continue
        try:
            out.append(tpl.render(**values))
        except StrategyError as exc:
            label = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
            problems += [
                Problem(p.code, f"variants[{i}].{p.path}", f"({label}) {p.message}")
                for p in exc.problems
            ]
    if problems:
        raise StrategyError(problems)
    return out
