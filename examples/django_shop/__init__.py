"""The Django example shop (``python examples/django_shop/manage.py runserver``)."""
