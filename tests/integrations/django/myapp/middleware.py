"""Stands in for Django's AuthenticationMiddleware: ``X-Test-User`` signs a user in.

``X-Test-No-Auser`` sets ``request.user`` alone, as Django 4.2's middleware does (``auser()``
came with 5.0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest


@dataclass
class User:
    pk: int | None

    @property
    def is_authenticated(self) -> bool:
        return self.pk is not None


class FakeAuthenticationMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        pk = request.headers.get("X-Test-User")
        user = User(int(pk) if pk else None)
        request.user = user  # type: ignore[assignment]
        if request.headers.get("X-Test-No-Auser"):  # Django 4.2, or an app's own middleware
            return self.get_response(request)

        async def auser() -> User:
            return user

        request.auser = auser  # type: ignore[attr-defined]
        return self.get_response(request)
