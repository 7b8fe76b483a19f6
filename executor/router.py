"""Which book trades which model's decision (issue 7, item 4).

- ``split`` (the default): the canary trades its own book with its capital share
  (``canary_share`` tag in the registry), production the rest; each book has its own PnL and
  limits; the broker nets them.
- ``overlap``: one book; the signal is ``w_old * s_old + w_new * s_new`` with ``w_new`` rising
  linearly from 0 to 1 over ``overlap_days`` from the canary's arrival (reference.md,
  "Overlapping transition"); at 1 the old model is off.
- ``shadow``: the canary's decisions run a shadow book: its orders are journaled and filled
  hypothetically by the loop (the paper broker's prices and costs), never sent; production
  trades all the real capital. The shadow book's capital is notional: the canary's share of the
  account, what the canary would trade once routed ``split`` at that share (0: no shadow book).

Pure: time comes in as an argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

from mia.errors import ConfigError

Mode = Literal["split", "overlap", "shadow"]
NS_PER_DAY: Final[int] = 86_400 * 1_000_000_000


@dataclass(frozen=True, kw_only=True)
class Routing:
    """How decisions map to books.

    :param mode: ``split``, ``overlap`` or ``shadow``.
    :param share: the canary's capital share (split), in [0, 1].
    :param overlap_days: ramp length of the overlapping transition.
    :param canary_since_ns: when the canary arrived (start of the ramp).
    """

    mode: Mode = "split"
    share: float = 0.0
    overlap_days: float = 5.0
    canary_since_ns: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("split", "overlap", "shadow"):
            raise ConfigError(f"routing {self.mode!r}: use split, overlap or shadow")
        if not 0.0 <= self.share <= 1.0:
            raise ConfigError(f"canary share {self.share!r} is outside [0, 1]; fix the canary's "
                              "canary_share tag (`mia registry set-share S --reason ...`)")
        if not (self.overlap_days >= 0.0 and math.isfinite(self.overlap_days)):
            raise ConfigError(f"overlap_days {self.overlap_days!r} must be a finite number >= 0")

    def capital(self, has_canary: bool) -> dict[str, float]:
        """:param has_canary: a canary model is loaded.
        :return: book -> share of the account's capital (books that exist). ``split`` at share
            1 leaves production 0: the loop then does not trade that book. ``shadow``'s share is
            notional: no real capital leaves production.
        """
        if not has_canary or self.mode == "overlap":
            return {"production": 1.0}
        if self.mode == "shadow":
            return {"production": 1.0, "shadow": self.share}
        return {"production": 1.0 - self.share, "canary": self.share}

    def weight_new(self, now_ns: int) -> float:
        """:return: the canary's weight in the overlapping transition at ``now_ns``."""
        span = self.overlap_days * NS_PER_DAY
        if span <= 0:
            return 1.0
        return min(max((now_ns - self.canary_since_ns) / span, 0.0), 1.0)

    def targets(self, production: float, canary: float | None, now_ns: int) -> dict[str, float]:
        """Target fractions per book.

        :param production: production's target fraction.
        :param canary: the canary's, or None when there is no canary.
        :return: book -> target fraction in [-1, 1].
        """
        if canary is None:
            return {"production": production}
        if self.mode == "overlap":
            w = self.weight_new(now_ns)
            return {"production": (1.0 - w) * production + w * canary}
        if self.mode == "shadow":
            return {"production": production, "shadow": canary}
        return {"production": production, "canary": canary}
