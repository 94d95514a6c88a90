"""What the three example apps share: the catalogue, the cart, and the collector's dev keys."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from journeykit.consent import Pseudonymizer, PseudonymKey
from journeykit.sdk.events import Product as ProductItem

CURRENCY = "EUR"


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    category: str
    price: float

    def item(self, quantity: int = 1) -> ProductItem:
        """The product as an item of a cart, checkout or order event."""
        return ProductItem(
            product_id=self.product_id,
            name=self.name,
            category=self.category,
            price=self.price,
            quantity=quantity,
        )


CATALOGUE: dict[str, Product] = {
    p.product_id: p
    for p in (
        Product("tea-01", "Sencha green tea", "tea", 8.50),
        Product("tea-02", "Assam breakfast tea", "tea", 7.20),
        Product("cup-01", "Stoneware cup", "tableware", 14.00),
        Product("pot-01", "Cast iron teapot", "tableware", 39.90),
        Product("kit-01", "Cold brew kit", "accessories", 24.50),
    )
}


def cart_lines(cart: Mapping[str, int]) -> list[tuple[Product, int]]:
    """(product, quantity) for the known products of ``cart``."""
    return [(CATALOGUE[pid], qty) for pid, qty in cart.items() if pid in CATALOGUE and qty > 0]


def cart_total(cart: Mapping[str, int]) -> float:
    return round(sum(p.price * qty for p, qty in cart_lines(cart)), 2)


def personalized(decisions: Any) -> dict[str, Any] | None:
    """What the personalized block shows, from a decision (``tracker.decisions()``), or ``None``.

    Reads ``recommendations`` (product ids), ``next_best_action``, ``segments`` and ``stage``
    from the decision, as attributes or keys (a ``Decision`` or its JSON).
    """
    if decisions is None:
        return None

    def field(name: str) -> Any:
        if isinstance(decisions, Mapping):
            return decisions.get(name)
        return getattr(decisions, name, None)

    ids = [getattr(r, "product_id", r) for r in field("recommendations") or ()]
    block = {
        "products": [CATALOGUE[i] for i in ids if isinstance(i, str) and i in CATALOGUE],
        "next_best_action": field("next_best_action"),
        "segments": list(field("segments") or ()),
        "stage": field("stage"),
    }
    return block if any(block.values()) else None


def collector_options(data_dir: Path | None = None) -> dict[str, Any]:
    """The client's write key and keys for the local collector: environment, else its data dir.

    ``journeykit collector serve --data-dir DIR`` without configured keys writes a development
    write key and pseudonymization key under ``DIR``; the app shares them, as a deployment
    shares ``JOURNEYKIT_PSEUDONYM_KEY``, so both sides make the same pseudonyms.
    """
    data_dir = Path(os.environ.get("JOURNEYKIT_DATA_DIR", data_dir or "data"))
    key = os.environ.get("JOURNEYKIT_WRITE_KEY") or _read(data_dir / "dev-write-key")
    options: dict[str, Any] = {"write_key": key}
    # A configured key (or key file) is the SDK's to read, as in production: never replaced
    # by a development key that happens to lie in the data dir.
    if not (
        os.environ.get("JOURNEYKIT_PSEUDONYM_KEY")
        or os.environ.get("JOURNEYKIT_PSEUDONYM_KEY_FILE")
    ):
        secret = _read(data_dir / "dev-pseudonym-key")
        options["pseudonymizer"] = Pseudonymizer(
            [PseudonymKey(key_id="dev", secret=SecretStr(secret))]
        )
    return options


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        variable = (
            "JOURNEYKIT_WRITE_KEY"
            if path.name == "dev-write-key"
            else ("JOURNEYKIT_PSEUDONYM_KEY or JOURNEYKIT_PSEUDONYM_KEY_FILE")
        )
        raise SystemExit(
            f"{path.resolve()} not found: start the collector first "
            f"(journeykit collector serve --data-dir {path.parent}), set JOURNEYKIT_DATA_DIR "
            f"to its data dir, or set {variable}"
        ) from None
