"""Settings of the Django example shop: no database (the cart lives in a signed cookie)."""

import os
import secrets
from pathlib import Path

from flask_shop.shop import collector_options

from journeykit.sdk.integrations import IntegrationSettings, build_client

DEBUG = os.environ.get("SHOP_DEBUG", "1") == "1"
SECRET_KEY = os.environ.get("SHOP_SECRET_KEY") or secrets.token_hex(32)
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "django_shop.urls"
INSTALLED_APPS = ["django.contrib.sessions", "django.contrib.messages"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "journeykit.sdk.integrations.django.JourneyKitMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = os.environ.get("SHOP_COOKIE_SECURE", "0") == "1"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [Path(__file__).resolve().parent / "templates"],
        "OPTIONS": {
            "context_processors": [
                # the banner's "next" is the page it is on: {{ request.get_full_path }}
                "django.template.context_processors.request",
                "django_shop.views.shop_context",
            ]
        },
    }
]
DATABASES: dict[str, object] = {}
USE_TZ = True

_options = collector_options()  # the local collector's dev keys (environment first)
JOURNEYKIT = {
    "write_key": _options.pop("write_key"),
    "host": os.environ.get("JOURNEYKIT_COLLECTOR_URL", "http://127.0.0.1:8787"),
    "cookie_secure": SESSION_COOKIE_SECURE,  # plain http on 127.0.0.1
    "page_views": True,
    "notice_version": "shop-privacy-2025-01",
}
JOURNEYKIT["client"] = build_client(IntegrationSettings(**JOURNEYKIT), **_options)
