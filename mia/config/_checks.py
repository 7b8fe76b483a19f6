"""Range metadata and the checked base class of every config dataclass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import Field, dataclass, fields
from typing import Any, Final, Literal, cast

from mia.errors import ConfigError

Activation = Literal["relu", "tanh"]
AGENT_NAMES: Final[tuple[str, ...]] = ("sac", "ppo", "ddpg", "ppo_lagrangian", "qrdqn")



@dataclass(frozen=True, kw_only=True, slots=True)
class Bound:
    """A numeric range put in field metadata; the loader checks numbers and their elements.

    :param lo: lower limit.
    :param hi: upper limit (inclusive), or ``None`` for none.
    :param lo_open: exclude ``lo`` itself.
    """

    lo: float
    hi: float | None = None
    lo_open: bool = False

    def contains(self, x: float) -> bool:
        """:param x: the value. :return: whether ``x`` lies in the range (NaN never does)."""
        above = x > self.lo if self.lo_open else x >= self.lo
        return above and (self.hi is None or x <= self.hi)

    def __str__(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return f"{'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"


POSITIVE: Final = {"bound": Bound(lo=0.0, lo_open=True)}
NON_NEGATIVE: Final = {"bound": Bound(lo=0.0)}
UNIT: Final = {"bound": Bound(lo=0.0, hi=1.0, lo_open=True)}  # (0, 1]
PROBABILITY: Final = {"bound": Bound(lo=0.0, hi=1.0)}  # [0, 1]


class _Problems(ConfigError):
    """Problems found by a dataclass about its own fields; ``lines`` are relative key paths."""

    def __init__(self, owner: str, lines: list[str]) -> None:
        super().__init__("\n".join(f"{owner}.{line}" for line in lines))
        self.lines = lines


class _Checked:
    """Base of every config dataclass: range checks from metadata, then ``_cross_checks``."""

    __slots__ = ()

    def __post_init__(self) -> None:
        problems = [line for f in fields(cast(Any, self))
                    for line in _out_of_range(f, getattr(self, f.name))]
        problems += self._cross_checks()
        if problems:
            raise _Problems(type(self).__name__, problems)

    def _cross_checks(self) -> list[str]:
        # Overridden per class; each line is "<relative key path>: <problem and fix>".
        return []


def _out_of_range(f: Field[Any], value: object) -> list[str]:
    # ranges apply to a number, or to each element of a tuple or each value of a mapping
    bound = f.metadata.get("bound")
    if bound is None:
        return []
    if isinstance(value, Mapping):
        items = [(f".{k}", v) for k, v in value.items()]
    elif isinstance(value, tuple):
        items = [(f"[{i}]", v) for i, v in enumerate(value)]
    else:
        items = [("", value)]
    return [f"{f.name}{suffix}: {v!r} is out of range; expected {bound}"
            for suffix, v in items if _is_number(v) and not bound.contains(v)]


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _increasing(values: tuple[float, ...]) -> bool:
    return all(a < b for a, b in zip(values, values[1:], strict=False))


def _exact_keys(name: str, got: Mapping[str, object], want: tuple[str, ...]) -> list[str]:
    if set(got) == set(want):
        return []
    return [f"{name}: keys must be exactly {', '.join(want)}; got {', '.join(got) or 'none'}"]


