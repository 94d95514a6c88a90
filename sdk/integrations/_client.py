"""The client an integration builds when the application does not give it one."""

from __future__ import annotations

from typing import Any

from journeykit.sdk import Client
from journeykit.sdk.integrations._settings import IntegrationSettings
from journeykit.sdk.integrations._tracker import request_consent

__all__ = ["build_client"]


def build_client(settings: IntegrationSettings, **kwargs: Any) -> Client:
    """A :class:`~journeykit.sdk.Client` wired to the request's consent.

    ``kwargs`` go to the client as well (``transport``, ``on_drop``, ``pseudonymizer``).

    Raises:
        ValueError: ``write_key`` is not set.
    """
    if not settings.write_key:
        raise ValueError("journeykit: set write_key in the integration settings, or pass a client")
    options = {"consent_regime": settings.consent_regime.value, **settings.client_options}
    return Client(
        settings.write_key,
        host=settings.host,
        consent_resolver=request_consent,
        **kwargs,
        **options,
    )
