"""The search space: Hydra sweep overrides turned into validated Optuna distributions.

Grammar (same as the stock hydra-optuna-sweeper, with one deliberate difference marked *):

* ``interval(a,b)`` -> ``FloatDistribution(a, b)``; ``tag(log, interval(a,b))`` -> log scale.
* ``int(interval(a,b))`` -> ``IntDistribution(a, b)`` (both ends inclusive, as in Optuna).
* ``range(a,b[,step])`` -> ``IntDistribution(a, b, step)``: as in the stock plugin (and unlike
  Python's ``range`` or Hydra's basic sweeper) ``b`` is included when ``a + k*step`` reaches it,
  so ``range(1,3)`` searches 1, 2, 3; ``FloatDistribution`` with ``step`` when an end or the
  step is a float. A negative step counts down from ``a`` to ``b`` (the same set of values).
  ``shuffle(range(...))`` -> categorical.
* ``choice(a,b,...)`` / ``a,b,...`` -> ``CategoricalDistribution``; lists, dicts and null are
  allowed as choices (*stock rejects them): Optuna stores them as their override text.
* any non-sweep override is a fixed value passed to every job unchanged; ``~key`` (or
  ``~key=value``) deletes ``key`` from every job's config and removes it from the search space.

Everything is checked before a study is touched or a job launched: an empty or reversed
interval or range, a log scale with a bound <= 0 or an unsupported sweep raises
``SearchSpaceError`` (a ``ValueError``)
naming the parameter, the offending value and what is valid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from hydra.errors import CompactHydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

_PRIMITIVE = (str, int, float, bool)


class SearchSpaceError(CompactHydraException, ValueError):
    """An invalid search space, found before anything is launched; Hydra prints it as one clear
    message, without a traceback."""


@dataclass
class SearchSpace:
    """Distributions to sample and fixed overrides, keyed by override key (e.g. ``model.lr``)."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    # key -> the value text after '=' (stored on each trial as a user attr)
    fixed: dict[str, str] = field(default_factory=dict)
    # key -> the override line exactly as the user wrote it (what the jobs receive)
    fixed_lines: dict[str, str] = field(default_factory=dict)
    # categorical key -> {Optuna choice -> override text}, for choices that are not plain text
    choice_text: dict[str, dict[Any, str]] = field(default_factory=dict)
    # key -> the deletion line (``~key`` or ``~key=value``): every job deletes the key
    deletions: dict[str, str] = field(default_factory=dict)

    def override_for(self, key: str, value: Any) -> str:
        """The override line ``key=value`` for a sampled value, in Hydra's grammar."""
        text = self.choice_text.get(key, {}).get(value)
        if text is None:
            text = Transformer.str(value)  # Hydra's public formatter of override values
        return f"{key}={text}"

    def grid(self) -> dict[str, list[Any]]:
        """Every distribution as a finite list of values, for ``optuna.samplers.GridSampler``."""
        grid: dict[str, list[Any]] = {}
        for key, dist in self.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                grid[key] = list(dist.choices)
            elif isinstance(dist, (IntDistribution, FloatDistribution)) and dist.step:
                n = int(round((dist.high - dist.low) / dist.step)) + 1
                grid[key] = [dist.low + i * dist.step for i in range(n)]
            else:
                raise SearchSpaceError(
                    f"search space parameter '{key}': GridSampler needs a finite set of values "
                    f"(choice(...) or range(...)), got {dist}"
                )
        return grid


def build_search_space(overrides: list[str]) -> SearchSpace:
    """Parse and validate ``overrides`` (``params`` first, then the command line).

    A key defined twice keeps its last definition, so a command-line override replaces the
    ``params`` entry of the same key, and a fixed value or a deletion (``~key``) removes the key
    from the search space.
    """
    parser = OverridesParser.create()
    space = SearchSpace()
    for line in overrides:
        key = line.split("=", 1)[0]
        try:
            override = parser.parse_override(line)
        except Exception as err:  # Hydra's parse errors do not always name the key
            raise SearchSpaceError(
                f"search space parameter '{key}': cannot parse '{line}': {err}"
            ) from err
        key = override.get_key_element()
        if override.is_delete():
            key = key.lstrip("~")
        space.distributions.pop(key, None)
        space.fixed.pop(key, None)
        space.fixed_lines.pop(key, None)
        space.choice_text.pop(key, None)
        space.deletions.pop(key, None)
        if override.is_delete():
            space.deletions[key] = line
            continue
        if not override.is_sweep_override():
            value = override.get_value_string() if override.value_type is not None else ""
            space.fixed[key] = value
            space.fixed_lines[key] = line
            continue
        space.distributions[key] = _distribution(key, line, override, space)
    return space


def _distribution(key: str, line: str, override: Override, space: SearchSpace) -> Any:
    """The Optuna distribution of one sweep override, validated."""
    value = override.value()
    if isinstance(value, IntervalSweep):
        return _interval(key, line, value)
    if isinstance(value, RangeSweep) and not value.shuffle:
        return _range(key, line, value)
    if isinstance(value, (ChoiceSweep, RangeSweep)):
        return _categorical(key, line, override, space)
    raise SearchSpaceError(
        f"search space parameter '{key}': '{line}' is a {type(value).__name__} sweep, which the "
        "Optuna sweeper does not support; use interval(a,b), int(interval(a,b)), "
        "tag(log, interval(a,b)), range(a,b[,step]) or choice(a,b,...)"
    )


def _interval(key: str, line: str, value: IntervalSweep) -> BaseDistribution:
    low, high = value.start, value.end
    log = "log" in value.tags
    if not (_finite(low) and _finite(high)) or not low < high:
        raise SearchSpaceError(
            f"search space parameter '{key}': '{line}' is empty or reversed "
            f"(low={low}, high={high}); interval(low, high) needs finite low < high"
        )
    if log and low <= 0:
        raise SearchSpaceError(
            f"search space parameter '{key}': '{line}' is on a log scale with low={low}; "
            "tag(log, interval(low, high)) needs 0 < low < high"
        )
    if isinstance(low, int) and isinstance(high, int):
        return IntDistribution(low, high, log=log)
    return FloatDistribution(float(low), float(high), log=log)


def _range(key: str, line: str, value: RangeSweep) -> BaseDistribution:
    start, stop, step = value.start, value.stop, value.step
    if step == 0 or not all(_finite(v) for v in (start, stop, step)):
        raise SearchSpaceError(
            f"search space parameter '{key}': '{line}' has step={step}; "
            "range(start, stop[, step]) needs finite bounds and a non-zero step"
        )
    # the stock plugin's values: start, start+step, ... up to and including stop
    n = math.floor((stop - start) / step + 1e-9) + 1
    if n <= 0:
        raise SearchSpaceError(
            f"search space parameter '{key}': '{line}' is empty; range(start, stop, step) "
            "needs start <= stop for step > 0 or start >= stop for step < 0 (stop is included)"
        )
    ends = (start, start + (n - 1) * step)
    low, high, step = min(ends), max(ends), abs(step)
    if all(isinstance(v, int) for v in (start, stop, step)):
        if low == high:  # a single value
            return IntDistribution(int(low), int(high))
        return IntDistribution(int(low), int(high), step=int(step))
    low, high = round(float(low), 12), round(float(high), 12)  # 0.1 * 3 -> 0.3
    if low == high:
        return FloatDistribution(low, high)
    return FloatDistribution(low, high, step=float(step))


def _categorical(key: str, line: str, override: Override, space: SearchSpace) -> Any:
    elements = list(override.sweep_iterator(transformer=Transformer.identity))
    if not elements:
        raise SearchSpaceError(
            f"search space parameter '{key}': '{line}' has no choices; "
            "choice(a, b, ...) needs at least one value"
        )
    choices: list[Any] = []
    texts: dict[Any, str] = {}
    for element in elements:
        # Optuna accepts only None/bool/int/float/str choices: others go as override text
        choice = element if element is None or isinstance(element, _PRIMITIVE) \
            else Transformer.str(element)
        if any(type(c) is type(choice) and c == choice for c in choices):
            continue  # type-aware, so that choice(1, true) keeps both
        choices.append(choice)
        texts[choice] = Transformer.str(element)
    space.choice_text[key] = texts
    return CategoricalDistribution(choices)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
