"""Web framework integrations: one module per framework, each behind its extra.

``journeykit.sdk.integrations.django``, ``.flask`` and ``.asgi`` bind a :class:`RequestTracker`
to each request; this package holds what they share and imports no framework.
"""

from journeykit.sdk.integrations._banner import BannerOutcome, handle_banner, safe_next
from journeykit.sdk.integrations._client import build_client
from journeykit.sdk.integrations._cookies import CookieOp, banner_choice
from journeykit.sdk.integrations._request import RequestInfo
from journeykit.sdk.integrations._settings import IntegrationSettings
from journeykit.sdk.integrations._tracker import (
    RequestTracker,
    bound,
    current_tracker,
    request_consent,
)

__all__ = [
    "BannerOutcome",
    "CookieOp",
    "IntegrationSettings",
    "RequestInfo",
    "RequestTracker",
    "banner_choice",
    "bound",
    "build_client",
    "current_tracker",
    "handle_banner",
    "request_consent",
    "safe_next",
]
