"""The default stream prefix reads the streams ``mia.data.stream.publish_bars`` writes."""

from __future__ import annotations

import pytest

from executor.feeds.redis_stream import RedisStreamFeed
from executor.settings import FeedSettings
from mia.data.stream import DEFAULT_PREFIX, stream_key


def test_the_default_feed_prefix_names_the_stream_publish_bars_writes():
    assert stream_key("ES", FeedSettings(kind="redis").prefix) == stream_key("ES", DEFAULT_PREFIX)
    assert stream_key("ES", FeedSettings(kind="redis").prefix) == "mia:bars:ES"


@pytest.mark.parametrize("prefix", ["mia:bars", "mia:bars:"])
def test_a_trailing_colon_in_the_prefix_reads_the_same_stream(prefix):
    feed = RedisStreamFeed("redis://127.0.0.1:6379/0", ["ES", "MNQ"], group="g", consumer="c",
                           prefix=prefix)  # nothing connects at construction
    assert set(feed._streams) == {"mia:bars:ES", "mia:bars:MNQ"}
