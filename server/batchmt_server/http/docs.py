"""``/docs`` (Swagger UI 5) and ``/redoc`` (ReDoc), served from this server so that they work offline and under
the CSP (``script-src 'self'``: the pages' scripts are files, not inline). The assets come from the
``fastapi-offline`` package (MIT; it ships Swagger UI 5 (Apache-2.0) and ReDoc's standalone bundle (MIT) as static
files); both read FastAPI's OpenAPI 3.1. Like ``/openapi.json``, the pages need a key when keys are on (a browser
asks for it as a password: Basic auth with the key as the password)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["assets_dir", "install_docs"]

HERE = Path(__file__).resolve().parent / "docs_static"
#: the files the pages load from the package's static folder
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js")


def assets_dir() -> Path | None:
    """The folder holding Swagger UI's and ReDoc's bundles, or None when ``fastapi-offline`` is not installed."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).resolve().parent / "static"
    return folder if all((folder / name).is_file() for name in ASSETS) else None


def install_docs(app: FastAPI) -> bool:
    """Add ``/docs`` and ``/redoc``; False (and no route) when the assets are not installed."""
    folder = assets_dir()
    if folder is None:
        return False

    def page(name: str, media_type: str):
        async def serve() -> FileResponse:
            return FileResponse(HERE / name, media_type=media_type)

        return serve

    app.get("/docs", include_in_schema=False)(page("index.html", "text/html; charset=utf-8"))
    app.get("/docs/init.js", include_in_schema=False)(page("init.js", "text/javascript; charset=utf-8"))
    app.get("/redoc", include_in_schema=False)(page("redoc.html", "text/html; charset=utf-8"))
    app.mount("/docs/assets", StaticFiles(directory=folder), name="docs-assets")
    return True
