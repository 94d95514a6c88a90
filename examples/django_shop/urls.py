from django.urls import path

from django_shop import views
from journeykit.sdk.integrations.django import consent_view

urlpatterns = [
    path("", views.index, name="index"),
    path("products/<str:product_id>", views.product, name="product"),
    path("cart", views.cart, name="cart"),
    path("cart/add", views.add_to_cart, name="add_to_cart"),
    path("checkout", views.checkout, name="checkout"),
    path("journeykit/consent", consent_view, name="consent"),
]
