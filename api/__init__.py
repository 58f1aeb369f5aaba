"""HTTP API over the engine (FastAPI): a thin shell that parses, calls ``engine``, and maps the
answer to a response schema.

``api.main.create_app`` builds an app (no app exists at import time); ``api.cli`` adds
``personalize serve``, which runs ``api.main:app_factory`` under uvicorn.
"""
