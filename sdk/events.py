"""Typed track events: the base class, a shared product model, Segment's e-commerce spec v2.

>>> from journeykit.sdk.events import ProductViewed
>>> client.track("u1", ProductViewed(product_id="p1", price=19.9))  # doctest: +SKIP
>>> client.track("u1", ProductViewed, {"product_id": "p1", "price": 19.9})  # doctest: +SKIP

The first form validates when you build the model, in your code (pydantic raises
``ValidationError`` there). The second lets the client validate: in ``strict`` mode an invalid
event raises :class:`~journeykit.sdk.InvalidMessage` at the call site; otherwise it is dropped
with reason ``invalid``, counted, and reported to ``on_drop``. See docs/sdk.md.
"""

from __future__ import annotations

from journeykit.sdk._ecommerce import (
    CartViewed,
    CheckoutStarted,
    CheckoutStepCompleted,
    CouponApplied,
    OrderCompleted,
    OrderRefunded,
    PaymentInfoEntered,
    ProductAdded,
    ProductAddedToWishlist,
    ProductClicked,
    ProductListViewed,
    ProductRemoved,
    ProductReviewed,
    ProductShared,
    ProductsSearched,
    ProductViewed,
)
from journeykit.sdk._events import Amount, Currency, Position, Product, Quantity, TrackEvent

__all__ = [
    "Amount",
    "CartViewed",
    "CheckoutStarted",
    "CheckoutStepCompleted",
    "CouponApplied",
    "Currency",
    "OrderCompleted",
    "OrderRefunded",
    "PaymentInfoEntered",
    "Position",
    "Product",
    "ProductAdded",
    "ProductAddedToWishlist",
    "ProductClicked",
    "ProductListViewed",
    "ProductRemoved",
    "ProductReviewed",
    "ProductShared",
    "ProductViewed",
    "ProductsSearched",
    "Quantity",
    "TrackEvent",
]
