"""Typed events: Segment's e-commerce names on the wire, validation at the right place."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

import httpx
import pytest
from helpers import Recorder
from pydantic import Field, ValidationError

from journeykit.sdk import Client, Drop, InvalidMessage, TrackEvent
from journeykit.sdk import events as ev

PRODUCT = {"product_id", "sku", "category", "name", "brand", "variant", "price", "url"} | {
    "image_url"
}
LINE = PRODUCT | {"quantity", "coupon", "position"}
ORDER = {"affiliation", "revenue", "shipping", "tax", "discount", "coupon", "currency"}

# Event and property names as Segment's e-commerce spec v2 writes them.
SPEC: dict[type[TrackEvent], tuple[str, set[str]]] = {
    ev.ProductsSearched: ("Products Searched", {"query"}),
    ev.ProductListViewed: ("Product List Viewed", {"list_id", "category", "products"}),
    ev.ProductViewed: ("Product Viewed", LINE | {"currency", "value"}),
    ev.ProductClicked: ("Product Clicked", LINE),
    ev.ProductAdded: ("Product Added", LINE | {"cart_id"}),
    ev.ProductRemoved: ("Product Removed", LINE | {"cart_id"}),
    ev.CartViewed: ("Cart Viewed", {"cart_id", "products"}),
    ev.CheckoutStarted: ("Checkout Started", ORDER | {"order_id", "value", "products"}),
    ev.CheckoutStepCompleted: (
        "Checkout Step Completed",
        {"checkout_id", "step", "shipping_method", "payment_method"},
    ),
    ev.PaymentInfoEntered: (
        "Payment Info Entered",
        {"checkout_id", "order_id", "step", "shipping_method", "payment_method"},
    ),
    ev.OrderCompleted: (
        "Order Completed",
        ORDER | {"checkout_id", "order_id", "subtotal", "total", "products"},
    ),
    ev.OrderRefunded: ("Order Refunded", {"order_id", "total", "currency", "products"}),
    ev.CouponApplied: (
        "Coupon Applied",
        {"order_id", "cart_id", "coupon_id", "coupon_name", "discount"},
    ),
    ev.ProductAddedToWishlist: (
        "Product Added to Wishlist",
        LINE | {"wishlist_id", "wishlist_name"},
    ),
    ev.ProductReviewed: (
        "Product Reviewed",
        {"product_id", "review_id", "review_body", "rating"},
    ),
    ev.ProductShared: ("Product Shared", PRODUCT | {"share_via", "share_message", "recipient"}),
}


def make_client(recorder: Recorder, **options: Any) -> Client:
    # Consent and pseudonymization have their own tests (test_consent_gate.py).
    options = {"consent_regime": "opt_out", "pseudonymize": False, **options}
    return Client("wk-test", transport=httpx.MockTransport(recorder), **options)


def test_every_ecommerce_event_is_covered() -> None:
    exported = {getattr(ev, n) for n in ev.__all__}
    models = {m for m in exported if isinstance(m, type) and issubclass(m, TrackEvent)}
    assert models - {TrackEvent} == set(SPEC)


@pytest.mark.parametrize("model", list(SPEC), ids=lambda m: m.__name__)
def test_event_and_property_names_follow_segments_spec(model: type[TrackEvent]) -> None:
    name, properties = SPEC[model]
    assert model.event_name == name
    assert set(model.model_fields) == properties


def test_product_lists_use_the_spec_names() -> None:
    assert set(ev.Product.model_fields) == LINE


def test_a_typed_event_goes_out_as_its_name_and_json_properties() -> None:
    recorder = Recorder()
    with make_client(recorder) as client:
        order = ev.OrderCompleted(
            order_id="o-1",
            total=Decimal("59.90"),
            currency="eur",
            products=[ev.Product(product_id="p1", price=29.95, quantity=2)],
        )
        assert client.track("u1", order)
        assert client.flush(timeout=5)
    (sent,) = recorder.events
    assert sent["event"] == "Order Completed"
    assert sent["properties"] == {
        "order_id": "o-1",
        "total": 59.9,
        "currency": "EUR",
        "products": [{"product_id": "p1", "price": 29.95, "quantity": 2}],
    }


def test_a_user_defined_event_is_a_subclass() -> None:
    class PlanUpgraded(TrackEvent):
        event_name: ClassVar[str] = "Plan Upgraded"
        plan: str
        seats: int = Field(ge=1)

    recorder = Recorder()
    with make_client(recorder) as client:
        assert client.track("u1", PlanUpgraded(plan="pro", seats=3))
        assert client.track("u1", PlanUpgraded, {"plan": "team", "seats": 9})
        assert client.flush(timeout=5)
    assert [(e["event"], e["properties"]) for e in recorder.events] == [
        ("Plan Upgraded", {"plan": "pro", "seats": 3}),
        ("Plan Upgraded", {"plan": "team", "seats": 9}),
    ]


@pytest.mark.parametrize(
    "data",
    [
        {"product_id": "p1", "price": -1},
        {"product_id": "p1", "quantity": 0},
        {"product_id": "p1", "currency": "EURO"},
        {"product_id": "p1", "prodcut_name": "typo"},
        {"price": 10},  # no product_id
        {"product_id": ""},
    ],
)
def test_constructing_an_invalid_event_fails_in_the_callers_code(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ev.ProductViewed(**data)


def test_invalid_event_class_and_data_raise_in_strict_mode() -> None:
    recorder = Recorder()
    with make_client(recorder, strict=True) as client:
        with pytest.raises(InvalidMessage, match=r"Product Viewed: price") as caught:
            client.track("u1", ev.ProductViewed, {"product_id": "p1", "price": -1})
        assert isinstance(caught.value.__cause__, ValidationError)
    assert recorder.requests == []


def test_invalid_event_class_and_data_are_dropped_and_counted_in_production() -> None:
    drops: list[Drop] = []
    recorder = Recorder()
    with make_client(recorder, on_drop=drops.append) as client:
        result = client.track("u1", ev.ProductViewed, {"product_id": "p1", "quantity": 0})
        assert client.track("u1", ev.ProductViewed, {"product_id": "p2"})
        assert client.flush(timeout=5)
    assert not result
    assert result.reason == "invalid"
    assert "quantity: Input should be greater than or equal to 1" in result.detail
    assert [d.reason for d in drops] == ["invalid"]
    assert client.stats().dropped == {"invalid": 1}
    assert [e["properties"] for e in recorder.events] == [{"product_id": "p2"}]


def test_the_detail_of_an_invalid_event_does_not_repeat_its_values() -> None:
    # Values may be personal data; the error names the field and the rule only.
    with make_client(Recorder()) as client:
        result = client.track("u1", ev.ProductReviewed, {"product_id": 7, "review_body": 1})
    assert not result
    assert "review_body" in result.detail
    assert "7" not in result.detail


def test_properties_beside_an_event_instance_are_refused() -> None:
    with make_client(Recorder()) as client:
        result = client.track("u1", ev.ProductViewed(product_id="p1"), {"price": 1})
    assert result.reason == "invalid"
    strict = make_client(Recorder(), strict=True)
    with strict, pytest.raises(InvalidMessage, match="not beside it"):
        strict.track("u1", ev.ProductViewed(product_id="p1"), {"price": 1})


def test_an_event_class_without_a_name_is_invalid() -> None:
    class Nameless(TrackEvent):
        thing: str

    with make_client(Recorder()) as client:
        result = client.track("u1", Nameless(thing="x"))
    assert result.reason == "invalid"
    assert "Nameless defines no event_name" in result.detail


def test_optional_text_may_be_empty_as_segment_clients_send_it() -> None:
    # "coupon": "" is an order without a coupon; only what names the subject must be text.
    order = ev.OrderCompleted.model_validate(
        {"order_id": "o1", "coupon": "", "products": [{"product_id": "p1", "variant": ""}]}
    )
    assert order.coupon == ""
    for bad in ({"order_id": ""}, {"order_id": "o1", "products": [{"product_id": ""}]}):
        with pytest.raises(ValidationError):
            ev.OrderCompleted.model_validate(bad)
    with pytest.raises(ValidationError):  # True is no quantity
        ev.OrderCompleted.model_validate(
            {"order_id": "o1", "products": [{"product_id": "p", "quantity": True}]}
        )
