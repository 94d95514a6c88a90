"""Typed track events: a pydantic model per event, with its name on the class.

A :class:`TrackEvent` subclass names its event in the class variable ``event_name`` and declares
its properties as fields. The client sends ``event_name`` as the ``event`` and the model's JSON
form (``None`` fields left out) as the ``properties``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from journeykit.sdk._message import InvalidMessage

__all__ = [
    "PLAIN_EVENTS",
    "Amount",
    "Currency",
    "Position",
    "Product",
    "Quantity",
    "TrackEvent",
    "track_fields",
]

Amount = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""A price or a sum of money: a finite number >= 0 (``Decimal`` and ``int`` are accepted)."""

Currency = Annotated[str, Field(pattern="^[A-Za-z]{3}$"), AfterValidator(str.upper)]
"""An ISO 4217 code: three letters, sent upper-cased (``"eur"`` becomes ``"EUR"``)."""

Quantity = Annotated[int, Field(ge=1, strict=True)]
"""A count of items: an integer >= 1 (``True`` is no count, nor ``"2"``)."""

Position = Annotated[int, Field(ge=1, strict=True)]
"""A 1-based position in a list or a checkout."""

Identity = Annotated[str, Field(min_length=1)]
"""What names an event's subject (``product_id``, ``order_id``, ``query``): never empty. Other
text may be: Segment clients send ``"coupon": ""`` for an order without a coupon."""

_MODEL_CONFIG = ConfigDict(frozen=True, extra="forbid")


class TrackEvent(BaseModel):
    """Base of typed track events. Subclass it, name the event, declare the properties::

        class PlanUpgraded(TrackEvent):
            event_name: ClassVar[str] = "Plan Upgraded"
            plan: str
            seats: int = Field(ge=1)

    Models are frozen and refuse unknown properties, so a misspelt property fails loudly;
    subclass to add properties to a standard event.
    """

    model_config = _MODEL_CONFIG

    event_name: ClassVar[str]
    """The ``event`` sent on the wire, e.g. ``"Product Viewed"``."""

    def properties(self) -> dict[str, Any]:
        """The event's properties in wire form: JSON types, ``None`` fields left out."""
        # model_dump(mode="json", exclude_none=True) without its Python wrapper, which costs
        # as much as the serialization itself; the serializer is the same one, with any
        # field or model serializers a subclass declares.
        props: dict[str, Any] = type(self).__pydantic_serializer__.to_python(
            self, mode="json", exclude_none=True
        )
        return props


class Product(BaseModel):
    """One product in a list (``products`` of carts, checkouts and orders)."""

    model_config = _MODEL_CONFIG

    product_id: Identity
    sku: str | None = None
    category: str | None = None
    name: str | None = None
    brand: str | None = None
    variant: str | None = None
    price: Amount | None = None
    quantity: Quantity | None = None
    coupon: str | None = None
    position: Position | None = None
    url: str | None = None
    image_url: str | None = None


def track_fields(
    event: str | TrackEvent | type[TrackEvent], properties: Mapping[str, Any] | None
) -> tuple[str, Any]:
    """The ``(event, properties)`` to send for a ``track`` call's two arguments.

    Raises:
        InvalidMessage: an event class whose properties do not validate (the pydantic errors
            are the message and its cause), properties given beside an event instance, or an
            event class without an ``event_name``.
    """
    if isinstance(event, TrackEvent):
        if properties is not None:
            raise InvalidMessage("pass properties in the event model, not beside it")
        cls = type(event)
        name = _name_of(cls)
        if cls.properties is TrackEvent.properties:
            PLAIN_EVENTS.add(cls)
        return name, event.properties()
    if isinstance(event, type) and issubclass(event, TrackEvent):
        name = _name_of(event)
        try:
            model = event.model_validate(properties if properties is not None else {})
        except ValidationError as exc:
            raise InvalidMessage(f"{name}: {_errors(exc)}") from exc
        return name, model.properties()
    return event, properties or {}


PLAIN_EVENTS: set[type[TrackEvent]] = set()
"""Event classes seen with an ``event_name`` and the inherited :meth:`TrackEvent.properties`.

``Client.track`` dumps their instances itself, with the same serializer call, sparing this
module's checks and two Python calls per typed event. Filled by :func:`track_fields`, so only
with classes an application actually tracks; never emptied (classes are few and long-lived).
"""


def _name_of(cls: type[TrackEvent]) -> str:
    name = getattr(cls, "event_name", None)
    if not isinstance(name, str) or not name:
        raise InvalidMessage(f"{cls.__name__} defines no event_name")
    return name


def _errors(exc: ValidationError) -> str:
    # One line per error, without the offending values (they may be personal data).
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False)
    )
