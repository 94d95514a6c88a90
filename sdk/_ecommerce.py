"""Segment's e-commerce spec v2 as typed events, with the spec's event and property names.

https://segment.com/docs/connections/spec/ecommerce/v2/ . Properties the spec treats as the
event's identity are required (``product_id``, ``order_id``, ``query``, ``step``); the rest are
optional and left out of the message when ``None``.
"""

from __future__ import annotations

from typing import ClassVar

from journeykit.sdk._events import (
    Amount,
    Currency,
    Identity,
    Position,
    Product,
    Quantity,
    TrackEvent,
)

__all__ = [
    "CartViewed",
    "CheckoutStarted",
    "CheckoutStepCompleted",
    "CouponApplied",
    "OrderCompleted",
    "OrderRefunded",
    "PaymentInfoEntered",
    "ProductAdded",
    "ProductAddedToWishlist",
    "ProductClicked",
    "ProductListViewed",
    "ProductRemoved",
    "ProductReviewed",
    "ProductShared",
    "ProductViewed",
    "ProductsSearched",
]


class _ProductDetails(TrackEvent):
    """What identifies and describes one product (all that Product Shared carries)."""

    product_id: Identity
    sku: str | None = None
    category: str | None = None
    name: str | None = None
    brand: str | None = None
    variant: str | None = None
    price: Amount | None = None
    url: str | None = None
    image_url: str | None = None


class _ProductEvent(_ProductDetails):
    """The product properties of the single-product events (a line of a list)."""

    quantity: Quantity | None = None
    coupon: str | None = None
    position: Position | None = None


# -- browsing -------------------------------------------------------------------------------


class ProductsSearched(TrackEvent):
    """A visitor searched the catalogue."""

    event_name: ClassVar[str] = "Products Searched"
    query: Identity


class ProductListViewed(TrackEvent):
    """A visitor viewed a product list or category."""

    event_name: ClassVar[str] = "Product List Viewed"
    list_id: str | None = None
    category: str | None = None
    products: list[Product] | None = None


class ProductClicked(_ProductEvent):
    """A visitor clicked a product in a list."""

    event_name: ClassVar[str] = "Product Clicked"


class ProductViewed(_ProductEvent):
    """A visitor viewed a product's details."""

    event_name: ClassVar[str] = "Product Viewed"
    currency: Currency | None = None
    value: Amount | None = None


# -- cart -----------------------------------------------------------------------------------


class ProductAdded(_ProductEvent):
    """A visitor added a product to their cart."""

    event_name: ClassVar[str] = "Product Added"
    cart_id: str | None = None


class ProductRemoved(_ProductEvent):
    """A visitor removed a product from their cart."""

    event_name: ClassVar[str] = "Product Removed"
    cart_id: str | None = None


class CartViewed(TrackEvent):
    """A visitor viewed their cart."""

    event_name: ClassVar[str] = "Cart Viewed"
    cart_id: str | None = None
    products: list[Product] | None = None


# -- checkout -------------------------------------------------------------------------------


class CheckoutStarted(TrackEvent):
    """A visitor started the checkout."""

    event_name: ClassVar[str] = "Checkout Started"
    order_id: str | None = None
    affiliation: str | None = None
    value: Amount | None = None
    revenue: Amount | None = None
    shipping: Amount | None = None
    tax: Amount | None = None
    discount: Amount | None = None
    coupon: str | None = None
    currency: Currency | None = None
    products: list[Product] | None = None


class CheckoutStepCompleted(TrackEvent):
    """A visitor completed a checkout step."""

    event_name: ClassVar[str] = "Checkout Step Completed"
    checkout_id: str | None = None
    step: Position
    shipping_method: str | None = None
    payment_method: str | None = None


class PaymentInfoEntered(TrackEvent):
    """A visitor entered payment details."""

    event_name: ClassVar[str] = "Payment Info Entered"
    checkout_id: str | None = None
    order_id: str | None = None
    step: Position | None = None
    shipping_method: str | None = None
    payment_method: str | None = None


class OrderCompleted(TrackEvent):
    """An order was placed."""

    event_name: ClassVar[str] = "Order Completed"
    checkout_id: str | None = None
    order_id: Identity
    affiliation: str | None = None
    subtotal: Amount | None = None
    total: Amount | None = None
    revenue: Amount | None = None
    shipping: Amount | None = None
    tax: Amount | None = None
    discount: Amount | None = None
    coupon: str | None = None
    currency: Currency | None = None
    products: list[Product] | None = None


class OrderRefunded(TrackEvent):
    """An order was refunded, wholly or (with ``products``) in part."""

    event_name: ClassVar[str] = "Order Refunded"
    order_id: Identity
    total: Amount | None = None
    currency: Currency | None = None
    products: list[Product] | None = None


# -- promotions, wishlists, reviews, sharing ------------------------------------------------


class CouponApplied(TrackEvent):
    """A coupon was applied to a cart or order."""

    event_name: ClassVar[str] = "Coupon Applied"
    order_id: str | None = None
    cart_id: str | None = None
    coupon_id: str | None = None
    coupon_name: str | None = None
    discount: Amount | None = None


class ProductAddedToWishlist(_ProductEvent):
    """A visitor added a product to a wishlist."""

    event_name: ClassVar[str] = "Product Added to Wishlist"
    wishlist_id: str | None = None
    wishlist_name: str | None = None


class ProductReviewed(TrackEvent):
    """A visitor reviewed a product."""

    event_name: ClassVar[str] = "Product Reviewed"
    product_id: Identity
    review_id: str | None = None
    review_body: str | None = None
    rating: float | None = None


class ProductShared(_ProductDetails):
    """A visitor shared a product."""

    event_name: ClassVar[str] = "Product Shared"
    share_via: str | None = None
    share_message: str | None = None
    recipient: str | None = None
