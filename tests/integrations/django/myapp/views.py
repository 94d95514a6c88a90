"""Views, one sync and one async, that track through ``request.journeykit``."""

from __future__ import annotations

import asyncio

from django.http import HttpRequest, HttpResponse, JsonResponse

from journeykit.sdk.integrations import current_tracker
from journeykit.sdk.integrations.django import tracker_for


def product(request: HttpRequest) -> HttpResponse:
    tracker_for(request).track("Product Viewed", {"product_id": "p1"})
    return HttpResponse("<p>product</p>")


async def product_async(request: HttpRequest) -> HttpResponse:
    assert asyncio.get_running_loop() is not None
    tracker = tracker_for(request)
    assert current_tracker() is tracker  # bound in this task by the middleware
    tracker.track("Product Viewed", {"product_id": "p2"})
    return HttpResponse("<p>async product</p>")


def who(request: HttpRequest) -> JsonResponse:
    tracker = tracker_for(request)
    return JsonResponse({"user_id": tracker.user_id, "anonymous_id": tracker.anonymous_id})
