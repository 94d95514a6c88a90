"""The Flask example shop (``python examples/flask_shop/app.py``)."""
