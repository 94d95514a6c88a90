"""The paths clients post events to: ours, and the ones other Segment-compatible clients use.

Segment's own service and RudderStack's answer the same API under several paths, and each
client library posts to the one its authors chose: a client whose path is missing gets 404,
which every one of them treats as final (the batch is dropped). So all of them are served, each
by the same handler as its canonical path.
"""

from __future__ import annotations

from typing import Final

from journeykit.sdk.protocol import MESSAGE_TYPES

__all__ = ["BATCH_ALIASES", "BEACON_BATCH", "SINGLE_ALIASES"]

BATCH_ALIASES: Final = {
    # analytics-ruby, analytics-java, analytics-android, classic analytics-ios; RudderStack
    "/v1/import": "analytics-ruby, analytics-java and analytics-android post here",
    # analytics-swift, analytics-kotlin, analytics.js with deliveryStrategy "batching"
    "/v1/b": "analytics-swift, analytics-kotlin and analytics.js's batching delivery post here",
}
"""Paths answered as ``POST /v1/batch``, with the clients that use each."""

SINGLE_ALIASES: Final = {f"/v1/{kind[0]}": kind for kind in MESSAGE_TYPES}
"""``/v1/t``, ``/v1/i``, ...: analytics.js's standard delivery posts one message to the path
named by its type's first letter; answered as ``POST /v1/<type>``."""

BEACON_BATCH: Final = "/beacon/v1/batch"
"""RudderStack's JavaScript SDK's beacon transport (``navigator.sendBeacon``): a batch whose
write key comes in the ``writeKey`` query parameter, since a beacon cannot set headers."""
