"""The Flask example shop: products, cart, checkout, a consent banner, a personalized block.

Start a local collector, then the shop (from the repository root)::

    journeykit collector serve --data-dir ./data
    python examples/flask_shop/app.py --data-dir ./data    # http://127.0.0.1:5000

With gunicorn and several workers (the client is made before the fork, see
docs/integrations.md)::

    gunicorn --preload -w 2 -c examples/flask_shop/gunicorn.conf.py \
        --chdir examples 'flask_shop.app:create_app()'
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import uuid
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, g, redirect, render_template, request, session, url_for

if __package__ in (None, ""):  # run as a script: make `flask_shop` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_shop.shop import (
    CATALOGUE,
    CURRENCY,
    cart_lines,
    cart_total,
    collector_options,
    personalized,
)
from journeykit.sdk.events import (
    CartViewed,
    CheckoutStarted,
    OrderCompleted,
    ProductAdded,
    ProductViewed,
)
from journeykit.sdk.integrations import IntegrationSettings, build_client
from journeykit.sdk.integrations.flask import JourneyKit


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """The shop; ``config["JOURNEYKIT"]`` overrides the integration settings."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = os.environ.get("SHOP_SECRET_KEY") or secrets.token_hex(32)
    secure = os.environ.get("SHOP_COOKIE_SECURE", "0") == "1"  # plain http on 127.0.0.1
    app.config["SESSION_COOKIE_SECURE"] = secure
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    journeykit: dict[str, Any] = {
        "host": os.environ.get("JOURNEYKIT_COLLECTOR_URL", "http://127.0.0.1:8787"),
        "cookie_secure": secure,
        "page_views": True,
        "notice_version": "shop-privacy-2025-01",
        "client_options": {"flush_interval": 0.2},
    }
    journeykit.update((config or {}).get("JOURNEYKIT", {}))
    client = None
    if "client" not in journeykit and "write_key" not in journeykit:
        options = collector_options()  # the local collector's dev keys
        journeykit["write_key"] = options.pop("write_key")
        client = build_client(IntegrationSettings(**journeykit), **options)
    app.config["JOURNEYKIT"] = journeykit
    JourneyKit(app, client=client)
    _routes(app)
    return app


def _routes(app: Flask) -> None:
    @app.context_processor
    def shop_context() -> dict[str, Any]:
        tracker = g.journeykit
        return {
            "banner": tracker.needs_banner,
            "personal": personalized(tracker.decisions()),
            "cart_count": sum(session.get("cart", {}).values()),
            "currency": CURRENCY,
        }

    @app.after_request
    def served_by(response: Response) -> Response:
        response.headers["X-Shop-Worker"] = str(os.getpid())  # which gunicorn worker answered
        return response

    @app.get("/")
    def index() -> str:
        return render_template("index.html", products=list(CATALOGUE.values()))

    @app.get("/products/<product_id>")
    def product(product_id: str) -> str:
        item = CATALOGUE.get(product_id) or abort(404)
        g.journeykit.track(
            ProductViewed(
                product_id=item.product_id,
                name=item.name,
                category=item.category,
                price=item.price,
                currency=CURRENCY,
            )
        )
        return render_template("product.html", product=item)

    @app.post("/cart/add")
    def add_to_cart() -> Any:
        item = CATALOGUE.get(request.form.get("product_id", "")) or abort(400)
        cart = dict(session.get("cart", {}))
        cart[item.product_id] = cart.get(item.product_id, 0) + 1
        session["cart"] = cart
        g.journeykit.track(
            ProductAdded(product_id=item.product_id, name=item.name, price=item.price, quantity=1)
        )
        return redirect(url_for("cart"), code=303)

    @app.get("/cart")
    def cart() -> str:
        cart = session.get("cart", {})
        lines = cart_lines(cart)
        g.journeykit.track(CartViewed(products=[p.item(q) for p, q in lines]))
        return render_template("cart.html", lines=lines, total=cart_total(cart))

    @app.post("/checkout")
    def checkout() -> str:
        cart = session.pop("cart", {})
        lines = cart_lines(cart)
        if not lines:
            abort(400)
        items = [p.item(q) for p, q in lines]
        total = cart_total(cart)
        order_id = uuid.uuid4().hex[:12]
        g.journeykit.track(CheckoutStarted(value=total, currency=CURRENCY, products=items))
        g.journeykit.track(
            OrderCompleted(order_id=order_id, total=total, currency=CURRENCY, products=items)
        )
        return render_template("done.html", order_id=order_id, total=total)


def main() -> None:
    parser = argparse.ArgumentParser(description="The journeykit Flask example shop.")
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="the collector's")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    os.environ.setdefault("JOURNEYKIT_DATA_DIR", str(args.data_dir))
    create_app().run(host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
