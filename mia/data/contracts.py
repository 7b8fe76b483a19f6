"""CME contract specifications (exchange facts, not tunables)."""

from __future__ import annotations

from typing import Final

from mia.errors import ConfigError
from mia.types import ContractSpec

CONTRACTS: Final[dict[str, ContractSpec]] = {
    "ES": ContractSpec(symbol="ES", multiplier=50.0, tick_size=0.25),
    "MNQ": ContractSpec(symbol="MNQ", multiplier=2.0, tick_size=0.25),
}


def contract(symbol: str) -> ContractSpec:
    """Look up a contract.

    :param symbol: root symbol, ``ES`` or ``MNQ``.
    :return: its :class:`ContractSpec`.
    """
    try:
        return CONTRACTS[symbol]
    except KeyError:
        known = ", ".join(CONTRACTS)
        raise ConfigError(f"unknown symbol {symbol!r}; MIA knows {known}") from None
