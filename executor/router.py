"""Which book trades which model's decision (issue 7, item 4).

- ``split`` (the default): the canary trades its own book with its capital share
  (``canary_share`` tag in the registry), production the rest; each book has its own PnL and
  limits; the broker nets them.
- ``overlap``: one book; the signal is ``w_old * s_old + w_new * s_new`` with ``w_new`` rising
  linearly from 0 to 1 over ``overlap_days`` from the canary's arrival (reference.md,
  "Overlapping transition"); at 1 the old model is off.
- ``shadow``: the canary's decisions run a shadow book (hypothetical fills, no orders); production
  trades all the capital.

Pure: time comes in as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

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

    def capital(self, has_canary: bool) -> dict[str, float]:
        """:return: book -> share of the account's capital (books that exist)."""
        if not has_canary or self.mode == "overlap":
            return {"production": 1.0}
        if self.mode == "shadow":
            return {"production": 1.0, "shadow": self.share or 1.0}
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
