"""The batches the collector benchmarks send: 100 track events, each with a fresh messageId.

Two shapes of event, the same for wrk (a Lua script, built here) and for the paced client:

- ``small``: ~200 bytes (a product id, a price, an IP and a user agent); the shape every
  earlier figure in docs/benchmarks.md was measured with.
- ``rich``: ~1.25 KB, what analytics.js sends for a product view (library, page, campaign,
  locale, screen, user-agent data, a dozen product properties, an anonymousId). pydantic's
  ``validate_json`` costs ~8 us per event of this shape on the reference machine (the issue's
  "~9 us per event" for its floor's batches); ~2.2 us for ``small``.

Each event is a template split around its messageId, so wrk's Lua only concatenates (building
125 KB bodies with ``string.format`` made wrk, not the server, the bottleneck).
"""

from __future__ import annotations

import argparse

import orjson

__all__ = [
    "SHAPES",
    "WRK_THREAD_IDS",
    "add_events_option",
    "lua_script",
    "paced_requests",
    "templates",
]

SHAPES = ("small", "rich")
_MARK = "\x00MID\x00"


def _small(i: int) -> dict[str, object]:
    return {
        "type": "track",
        "userId": f"user-{i}",
        "event": "Product Viewed",
        "messageId": _MARK,
        "properties": {"product_id": f"p{i}", "price": 19.9, "currency": "EUR"},
        "context": {"ip": "203.0.113.7", "userAgent": "bench"},
    }


def _rich(i: int) -> dict[str, object]:
    url = f"https://shop.example.com/p/{i}"
    return {
        "type": "track",
        "event": "Product Viewed",
        "userId": f"user-{i}",
        "anonymousId": f"0b5e7a1c-3f2d-4c8e-9a6b-{i:012d}",
        "messageId": _MARK,
        # Each event's own time, as the browser took it; sentAt is the batch's (one flush).
        "timestamp": f"2026-12-04T10:{14 + i // 60:02d}:{i % 60:02d}.{i * 37 % 1000:03d}Z",
        "sentAt": "2026-12-04T10:16:40.456Z",
        "properties": {
            "product_id": f"p{i}",
            "sku": f"SKU-{i:05d}",
            "category": "Shoes",
            "name": "Trail Runner 2",
            "brand": "Northpeak",
            "variant": "Blue / 42",
            "price": 119.9,
            "quantity": 1,
            "currency": "EUR",
            "position": 3,
            "url": url,
            "image_url": f"https://cdn.example.com/p/{i}.jpg",
        },
        "context": {
            "library": {"name": "analytics.js", "version": "next-1.70.0"},
            "page": {
                "path": f"/p/{i}",
                "referrer": "https://www.google.com/",
                "search": "?utm_source=newsletter",
                "title": "Trail Runner 2 - Northpeak",
                "url": f"{url}?utm_source=newsletter",
            },
            "userAgent": (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                "Gecko) Chrome/131.0.0.0 Safari/537.36"
            ),
            "userAgentData": {
                "brands": [{"brand": "Chromium", "version": "131"}],
                "mobile": False,
                "platform": "Windows",
            },
            "locale": "de-DE",
            "timezone": "Europe/Berlin",
            "screen": {"width": 1920, "height": 1080, "density": 1},
            "campaign": {"source": "newsletter", "medium": "email", "name": "winter_sale"},
            "ip": "203.0.113.7",
        },
        "integrations": {},
    }


def templates(shape: str) -> list[tuple[str, str]]:
    """(text before the messageId, text after it) of each of the 100 events."""
    make = _rich if shape == "rich" else _small
    out = []
    for i in range(1, 101):
        text = orjson.dumps(make(i)).decode()
        before, after = text.split(orjson.dumps(_MARK).decode())
        out.append((before + '"', '"' + after))
    return out


def add_events_option(parser: argparse.ArgumentParser) -> None:
    """``--events small|rich``, the shape every collector bench sends (default ``small``)."""
    parser.add_argument(
        "--events",
        choices=SHAPES,
        default="small",
        help="the events' shape (bench/_workload.py): ~200 bytes, or ~1.25 KB as analytics.js",
    )


def paced_requests(count: int, auth: str, run: str, shape: str = "small") -> list[bytes]:
    """``count`` raw HTTP requests of 100 ``shape`` events, messageIds ``p-{run}-{n}-{i}``."""
    rows = templates(shape)
    requests = []
    for n in range(count):
        events = ",".join(f"{a}p-{run}-{n}-{i}{b}" for i, (a, b) in enumerate(rows, 1))
        body = f'{{"batch":[{events}]}}'.encode()
        head = (
            "POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Basic {auth}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


def lua_script(auth: str, shape: str = "small") -> str:
    """A wrk script posting batches of 100 ``shape`` events, messageIds ``m-{thread}-{n}-{i}``."""
    rows = "\n".join(f"  {{[==[{a}]==], [==[{b}]==]}}," for a, b in templates(shape))
    return f'AUTH = "{auth}"\nEVENTS = {{\n{rows}\n}}\n' + _LUA


WRK_THREAD_IDS = r"""
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
"""
"""A wrk script's prelude giving each thread its number as ``tid`` (read it in ``init``)."""

_LUA = (
    WRK_THREAD_IDS
    + r"""
local counter = 0
local thread_id = 0
function init(args)
  thread_id = tid
end
request = function()
  counter = counter + 1
  local parts = {}
  local stem = "m-" .. thread_id .. "-" .. counter .. "-"
  for i = 1, 100 do
    parts[i] = EVENTS[i][1] .. stem .. i .. EVENTS[i][2]
  end
  local body = '{"batch":[' .. table.concat(parts, ",") .. ']}'
  return wrk.format("POST", "/v1/batch", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Basic " .. AUTH,
  }, body)
end
"""
)
