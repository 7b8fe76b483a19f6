"""Feeds: where the loop's bars come from (replay, Redis Streams, a vendor session).

- :mod:`executor.feeds.base` — the :class:`Feed` protocol and its events (:class:`FeedItem`,
  :class:`BadMessage`, :class:`Idle`).
- :mod:`executor.feeds.replay` — :class:`ReplayFeed` over the Parquet store (pandas).
- :mod:`executor.feeds.redis_stream` — :class:`RedisStreamFeed`, a consumer group (redis-py).
- :mod:`executor.feeds.vendor` — :class:`VendorSession` (the vendor interface) and
  :class:`VendorFeed`.

Only the protocol is imported here, so choosing one feed does not load another's dependencies.
"""

from executor.feeds.base import Backoff, BadMessage, Feed, FeedEvent, FeedItem, Idle

__all__ = ["Backoff", "BadMessage", "Feed", "FeedEvent", "FeedItem", "Idle"]
