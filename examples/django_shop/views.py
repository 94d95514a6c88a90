"""The shop's views: the same journey as the Flask shop, tracked through request.journeykit."""

from __future__ import annotations

import uuid
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from flask_shop.shop import CATALOGUE, CURRENCY, cart_lines, cart_total, personalized

from journeykit.sdk.events import (
    CartViewed,
    CheckoutStarted,
    OrderCompleted,
    ProductAdded,
    ProductViewed,
)
from journeykit.sdk.integrations.django import tracker_for


def shop_context(request: HttpRequest) -> dict[str, Any]:
    tracker = tracker_for(request)
    return {
        "banner": tracker.needs_banner,
        "personal": personalized(tracker.decisions()),
        "cart_count": sum(request.session.get("cart", {}).values()),
        "currency": CURRENCY,
    }


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "index.html", {"products": list(CATALOGUE.values())})


def product(request: HttpRequest, product_id: str) -> HttpResponse:
    item = CATALOGUE.get(product_id)
    if item is None:
        raise Http404(product_id)
    tracker_for(request).track(
        ProductViewed(
            product_id=item.product_id, name=item.name, price=item.price, currency=CURRENCY
        )
    )
    return render(request, "product.html", {"product": item})


@require_POST
def add_to_cart(request: HttpRequest) -> HttpResponse:
    item = CATALOGUE.get(request.POST.get("product_id", ""))
    if item is None:
        return HttpResponseBadRequest("unknown product")
    cart = dict(request.session.get("cart", {}))
    cart[item.product_id] = cart.get(item.product_id, 0) + 1
    request.session["cart"] = cart
    tracker_for(request).track(
        ProductAdded(product_id=item.product_id, name=item.name, price=item.price, quantity=1)
    )
    return redirect("cart")


def cart(request: HttpRequest) -> HttpResponse:
    cart = request.session.get("cart", {})
    lines = cart_lines(cart)
    tracker_for(request).track(CartViewed(products=[p.item(q) for p, q in lines]))
    return render(request, "cart.html", {"lines": lines, "total": cart_total(cart)})


@require_POST
def checkout(request: HttpRequest) -> HttpResponse:
    cart = request.session.pop("cart", {})
    lines = cart_lines(cart)
    if not lines:
        return HttpResponseBadRequest("the cart is empty")
    items = [p.item(q) for p, q in lines]
    total = cart_total(cart)
    order_id = uuid.uuid4().hex[:12]
    tracker = tracker_for(request)
    tracker.track(CheckoutStarted(value=total, currency=CURRENCY, products=items))
    tracker.track(OrderCompleted(order_id=order_id, total=total, currency=CURRENCY, products=items))
    return render(request, "done.html", {"order_id": order_id, "total": total})
