"""Django settings for these tests only: configured here, so the rest of the suite is unaffected.

No database: the test app's "authentication" middleware puts a user object on the request, as
Django's does, without the auth tables.
"""

from __future__ import annotations

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="journeykit-tests-only",
        ALLOWED_HOSTS=["testserver", "127.0.0.1"],
        ROOT_URLCONF="integrations.django.myapp.urls",
        INSTALLED_APPS=["django.contrib.contenttypes"],
        MIDDLEWARE=[
            "integrations.django.myapp.middleware.FakeAuthenticationMiddleware",
            "journeykit.sdk.integrations.django.JourneyKitMiddleware",
        ],
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()
