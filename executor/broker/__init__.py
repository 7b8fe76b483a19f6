"""Broker adapters behind one protocol: the paper broker (default) and, later, real ones."""

from executor.broker.base import (
    BOOKS,
    Broker,
    BrokerTimeout,
    Fill,
    Order,
    OrderRejected,
    client_id,
)
from executor.broker.paper import BrokerFault, PaperBroker

__all__ = [
    "BOOKS",
    "Broker",
    "BrokerFault",
    "BrokerTimeout",
    "Fill",
    "Order",
    "OrderRejected",
    "PaperBroker",
    "client_id",
]
