"""Realistic shop sessions sent through the journeykit SDK.

Each simulated user answers the consent banner (analytics granted; personalization and
marketing granted by most, denied by some), browses, searches, views products, adds to cart,
and then abandons, buys, or buys and returns. Property names follow Segment's e-commerce spec
v2; emails are pseudonymized by the SDK.

    python examples/simulate_traffic.py --users 100 --host http://127.0.0.1:8787 --write-key KEY
"""

from __future__ import annotations

import argparse
import os
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from journeykit.consent import Pseudonymizer
from journeykit.sdk import Client
from journeykit.sdk.events import ProductsSearched

CATALOG = [
    {
        "product_id": f"p{i:03d}",
        "sku": f"SKU-{i:03d}",
        "name": name,
        "category": category,
        "price": price,
    }
    for i, (name, category, price) in enumerate(
        [
            ("Trail Runner", "shoes", 119.0),
            ("City Sneaker", "shoes", 89.0),
            ("Rain Shell", "jackets", 149.0),
            ("Down Parka", "jackets", 249.0),
            ("Merino Tee", "tops", 49.0),
            ("Linen Shirt", "tops", 59.0),
            ("Day Pack", "bags", 79.0),
            ("Weekender", "bags", 139.0),
            ("Wool Socks", "accessories", 15.0),
            ("Sun Cap", "accessories", 25.0),
        ]
    )
]
SEARCHES = ["running shoes", "waterproof jacket", "gift", "backpack", "socks"]


@dataclass
class Summary:
    users: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    subjects: list[str] = field(default_factory=list)
    """Each session's person: the user id after login, else the device's anonymous id."""

    @property
    def events(self) -> int:
        return sum(self.calls.values())


def _line(product: dict[str, object], quantity: int = 1) -> dict[str, object]:
    return {**product, "quantity": quantity}


def simulate(client: Client, users: int, seed: int = 7) -> Summary:
    """Send ``users`` shop sessions through ``client``; returns what was recorded."""
    rng = random.Random(seed)
    summary = Summary(users=users)
    start = datetime.now(UTC) - timedelta(hours=1)

    def record(ok: object, name: str) -> None:
        summary.calls[name] += 1
        if not ok:
            summary.refused += 1

    for n in range(users):
        anonymous_id = str(uuid.UUID(int=rng.getrandbits(128)))
        user_id = f"user-{n:05d}" if rng.random() < 0.6 else None
        clock = start + timedelta(seconds=rng.randint(0, 3000))

        def at(seconds: int) -> datetime:
            nonlocal clock
            clock += timedelta(seconds=seconds)
            return clock

        ids = {"anonymous_id": anonymous_id}
        summary.subjects.append(user_id or anonymous_id)
        ads = ["marketing"] if rng.random() < 0.7 else []  # the rest deny marketing
        tailored = ["personalization"] if rng.random() < 0.8 else []
        consent = client.consent(
            user_id,
            granted=["analytics", *ads, *tailored],
            denied=[
                p for p, given in (("marketing", ads), ("personalization", tailored)) if not given
            ],
            notice_version="notice-2025-02",
            timestamp=at(0),
            **ids,
        )
        record(consent, "Consent Updated")
        record(client.page(user_id, "Home", {"path": "/"}, timestamp=at(0), **ids), "page")
        if user_id:
            traits = {
                "plan": rng.choice(["free", "plus"]),
                "country": rng.choice(["DE", "FR"]),
                "email": f"{user_id}@example.com",
            }
            record(client.identify(user_id, traits, timestamp=at(2), **ids), "identify")
            record(client.alias(anonymous_id, user_id, timestamp=at(1)), "alias")
        if rng.random() < 0.5:
            query = rng.choice(SEARCHES)
            record(
                client.track(user_id, ProductsSearched(query=query), timestamp=at(5), **ids),
                "Products Searched",
            )
        viewed = rng.sample(CATALOG, rng.randint(1, 5))
        for product in viewed:
            record(
                client.page(
                    user_id,
                    str(product["name"]),
                    {"path": f"/p/{product['product_id']}"},
                    category="Product",
                    timestamp=at(8),
                    **ids,
                ),
                "page",
            )
            record(
                client.track(user_id, "Product Viewed", product, timestamp=at(3), **ids),
                "Product Viewed",
            )
        if rng.random() < 0.35:
            continue  # bounced after browsing
        cart = [_line(p, rng.randint(1, 2)) for p in viewed[: rng.randint(1, len(viewed))]]
        for line in cart:
            record(
                client.track(
                    user_id,
                    "Product Added",
                    {"cart_id": anonymous_id, **line},
                    timestamp=at(6),
                    **ids,
                ),
                "Product Added",
            )
        total = round(sum(float(str(li["price"])) * int(str(li["quantity"])) for li in cart), 2)
        record(
            client.track(
                user_id,
                "Cart Viewed",
                {"cart_id": anonymous_id, "products": cart},
                timestamp=at(4),
                **ids,
            ),
            "Cart Viewed",
        )
        if rng.random() < 0.4:
            continue  # abandoned the cart
        order_id = f"o-{n:05d}"
        record(
            client.track(
                user_id,
                "Checkout Started",
                {"order_id": order_id, "value": total, "currency": "EUR", "products": cart},
                timestamp=at(20),
                **ids,
            ),
            "Checkout Started",
        )
        record(
            client.track(
                user_id,
                "Order Completed",
                {
                    "order_id": order_id,
                    "total": total,
                    "revenue": total,
                    "currency": "EUR",
                    "products": cart,
                },
                timestamp=at(40),
                **ids,
            ),
            "Order Completed",
        )
        if rng.random() < 0.1:
            record(
                client.track(
                    user_id,
                    "Order Refunded",
                    {"order_id": order_id, "total": total, "currency": "EUR"},
                    timestamp=at(86_400),
                    **ids,
                ),
                "Order Refunded",
            )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--host", default="http://127.0.0.1:8787")
    parser.add_argument("--write-key", required=True)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    # A real deployment sets JOURNEYKIT_PSEUDONYM_KEY (or _FILE); without, a random demo key.
    configured = {"JOURNEYKIT_PSEUDONYM_KEY", "JOURNEYKIT_PSEUDONYM_KEY_FILE"} & set(os.environ)
    demo_key = None if configured else Pseudonymizer.demo()
    with Client(args.write_key, host=args.host, pseudonymizer=demo_key) as client:
        summary = simulate(client, args.users, args.seed)
        client.flush(timeout=30)
        stats = client.stats()
    print(
        f"{summary.users} users, {summary.events} events recorded, {stats.sent} delivered, "
        f"{stats.dropped_total} dropped {dict(stats.dropped)}"
    )


if __name__ == "__main__":
    main()
