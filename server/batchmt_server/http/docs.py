"""``/docs``: Swagger UI served from this server (the ``swagger-ui-bundle`` package), so it works offline and under
the CSP (``script-src 'self'``: the page's one script is a file, not inline). ``/redoc`` is not served: ReDoc has
no offline package on PyPI. Like ``/openapi.json``, ``/docs`` needs a key when keys are on (a browser asks for it
as a password: Basic auth with the key as the password)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["install_docs"]

HERE = Path(__file__).resolve().parent / "docs_static"


def install_docs(app: FastAPI) -> bool:
    """Add ``/docs``; False (and no route) when ``swagger-ui-bundle`` is not installed."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return False

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(HERE / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/docs/init.js", include_in_schema=False)
    async def docs_init() -> FileResponse:
        return FileResponse(HERE / "init.js", media_type="text/javascript; charset=utf-8")

    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")
    return True
