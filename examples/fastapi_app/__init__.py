"""The FastAPI example (``python examples/fastapi_app/app.py``)."""
