from django.urls import path
from integrations.django.myapp import views

from journeykit.sdk.integrations.django import consent_view

urlpatterns = [
    path("products/p1", views.product),
    path("products/p2", views.product_async),
    path("who", views.who),
    path("journeykit/consent", consent_view),
]
