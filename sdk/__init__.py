"""journeykit's Python SDK: record events, respect consent, deliver them reliably.

>>> from journeykit.sdk import Client
>>> from journeykit.sdk.events import OrderCompleted
>>> with Client("my-write-key", host="http://127.0.0.1:8787") as client:  # doctest: +SKIP
...     client.consent("user-1", granted=["analytics"], notice_version="2025-02")
...     client.track("user-1", OrderCompleted(order_id="o-1", total=42.0))

For asyncio applications, :class:`AsyncClient` has the same calls. Typed events live in
:mod:`journeykit.sdk.events`, the wire format in :mod:`journeykit.sdk.protocol`. Events pass
the consent gate and are pseudonymized before they are queued (docs/sdk.md).
"""

from journeykit.sdk._async_client import AsyncClient
from journeykit.sdk._client import Client, Enqueued
from journeykit.sdk._decision import Decision, NextBestAction, Recommendation
from journeykit.sdk._events import TrackEvent
from journeykit.sdk._message import InvalidMessage, MessageTooLarge
from journeykit.sdk._settings import DEFAULT_HOST, ClientSettings
from journeykit.sdk._stats import ClientStats, Drop, DropReason
from journeykit.sdk._version import VERSION

__all__ = [
    "DEFAULT_HOST",
    "VERSION",
    "AsyncClient",
    "Client",
    "ClientSettings",
    "ClientStats",
    "Decision",
    "Drop",
    "DropReason",
    "Enqueued",
    "InvalidMessage",
    "MessageTooLarge",
    "NextBestAction",
    "Recommendation",
    "TrackEvent",
]
