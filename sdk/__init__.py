"""journeykit's Python SDK: record events, respect consent, deliver them reliably.

>>> from journeykit.sdk import Client
>>> with Client("my-write-key", host="http://127.0.0.1:8787") as client:
...     client.track("user-1", "Order Completed", {"order_id": "o-1", "total": 42.0})

The wire format lives in :mod:`journeykit.sdk.protocol`.
"""

from journeykit.sdk._client import Client, Enqueued
from journeykit.sdk._message import InvalidMessage, MessageTooLarge
from journeykit.sdk._settings import DEFAULT_HOST, ClientSettings
from journeykit.sdk._stats import ClientStats, Drop, DropReason
from journeykit.sdk._version import VERSION

__all__ = [
    "DEFAULT_HOST",
    "VERSION",
    "Client",
    "ClientSettings",
    "ClientStats",
    "Drop",
    "DropReason",
    "Enqueued",
    "InvalidMessage",
    "MessageTooLarge",
]
