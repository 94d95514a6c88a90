"""journeykit's collector: a Segment-compatible tracking endpoint that writes NDJSON.

Install with ``pip install "journeykit[collector]"`` and run ``journeykit collector serve``,
or embed the ASGI app::

    from journeykit.collector.app import create_app
    from journeykit.collector.settings import CollectorSettings

Importing this package imports neither starlette nor uvicorn; its modules do.
"""
