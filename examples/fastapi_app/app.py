"""The FastAPI example: a small shop API behind journeykit's ASGI middleware.

Start a local collector, then the app (from the repository root)::

    journeykit collector serve --data-dir ./data
    python examples/fastapi_app/app.py --data-dir ./data     # http://127.0.0.1:8001/docs

The banner's form posts to ``/journeykit/consent`` (the middleware answers it); try
``curl -c jar -b jar -d choice=accept http://127.0.0.1:8001/journeykit/consent`` and then
``curl -b jar http://127.0.0.1:8001/products/tea-01``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request

if __package__ in (None, ""):  # run as a script: make the shared catalogue importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_shop.shop import CATALOGUE, CURRENCY, collector_options, personalized

from journeykit.sdk.events import ProductAdded, ProductViewed
from journeykit.sdk.integrations import IntegrationSettings, build_client
from journeykit.sdk.integrations.asgi import JourneyKitMiddleware


def create_app(**journeykit: Any) -> FastAPI:
    """The app; keyword arguments override the integration settings (tests pass ``client``)."""
    app = FastAPI(title="journeykit FastAPI example")
    client = journeykit.pop("client", None)
    settings = IntegrationSettings(
        **{
            "host": os.environ.get("JOURNEYKIT_COLLECTOR_URL", "http://127.0.0.1:8787"),
            "cookie_secure": os.environ.get("SHOP_COOKIE_SECURE", "0") == "1",
            "notice_version": "shop-privacy-2025-01",
            **journeykit,
        }
    )
    if client is None:
        options = collector_options()  # the local collector's dev keys (environment first)
        settings = settings.model_copy(update={"write_key": options.pop("write_key")})
        client = build_client(settings, **options)
    app.add_middleware(JourneyKitMiddleware, client=client, settings=settings)

    @app.get("/products")
    def products(request: Request) -> dict[str, Any]:
        tracker = request.state.journeykit
        return {
            "products": [vars(p) for p in CATALOGUE.values()],
            "consent_needed": tracker.needs_banner,
            "personalized": personalized(tracker.decisions()),
        }

    @app.get("/products/{product_id}")
    def product(product_id: str, request: Request) -> dict[str, Any]:
        item = CATALOGUE.get(product_id)
        if item is None:
            raise HTTPException(404, "no such product")
        request.state.journeykit.track(
            ProductViewed(product_id=item.product_id, name=item.name, price=item.price)
        )
        return {**vars(item), "currency": CURRENCY}

    @app.post("/cart/{product_id}")
    def add_to_cart(product_id: str, request: Request) -> dict[str, Any]:
        item = CATALOGUE.get(product_id)
        if item is None:
            raise HTTPException(404, "no such product")
        result = request.state.journeykit.track(
            ProductAdded(product_id=item.product_id, price=item.price, quantity=1)
        )
        return {"added": item.product_id, "tracked": bool(result)}

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="The journeykit FastAPI example.")
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="the collector's")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    os.environ.setdefault("JOURNEYKIT_DATA_DIR", str(args.data_dir))
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
