"""The routes of the translation memory API (``/v1/memory``): HTTP in, :class:`~.serving.MemoryServing` out.

- ``POST /v1/memory/import``: a TMX or TSV file (multipart field ``file``, as ``/v1/files`` takes it; optional
  field ``format``): its pairs become human entries of the caller's memory;
- ``GET /v1/memory/export``: the caller's memory as TMX 1.4b (``?origin=human|model``);
- ``DELETE /v1/memory``: purge the caller's memory, all of it or ``?source=`` one English sentence, ``?origin=``
  one origin; an admin key may name another key with ``?key=<key id>``;
- ``GET /v1/memory``: how many entries the caller's memory holds, and its limits.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import StreamingResponse

from ..http.middleware import principal_of
from ..jobs.serving import check_key
from ..protocol.errors import APIError
from .protocol import MemoryImport, MemoryInfo, MemoryPurge, Origin
from .serving import MemoryServing, scope_of

__all__ = ["router", "install_memory"]

router = APIRouter(tags=["memory"])


def _serving(request: Request, key: str | None = None) -> tuple[MemoryServing, str]:
    settings = request.app.state.jobs_serving.settings
    rec = principal_of(request)
    check_key(settings, request, rec)
    jobs = getattr(request.app.state, "jobs", None)
    serving = MemoryServing(jobs.memory if jobs is not None else None, settings)
    scope = scope_of(rec.id if rec is not None else None, rec is None or rec.role == "admin", key)
    return serving, scope


@router.post("/v1/memory/import", responses={400: {}, 401: {}, 409: {}, 413: {}, 415: {}, 422: {}})
async def import_memory(request: Request) -> MemoryImport:
    """Import human translations (TMX 1.4b or TSV ``English<TAB>German``): they answer before the model, under
    every model and setting, and are never evicted."""
    serving, scope = _serving(request)
    limit = serving.max_import_bytes
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise APIError(415, "unsupported_media_type", "upload the file as multipart/form-data in the field 'file'")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise APIError(
            413, "file_too_large", f"the upload is {int(declared)} bytes; imports are limited to {limit}", param="file"
        )
    form = await request.form(max_files=1, max_fields=4)
    try:
        upload, fmt = form.get("file"), form.get("format")
        if upload is None or isinstance(upload, str):
            raise APIError(422, "invalid_request", "the form has no file in the field 'file'", param="file")
        content, filename = await upload.read(limit + 1), upload.filename
    finally:
        await form.close()
    return await serving.import_file(scope, content, filename, fmt if isinstance(fmt, str) else None)


@router.get("/v1/memory/export", responses={401: {}, 403: {}, 409: {}})
async def export_memory(request: Request, origin: Origin | None = None, key: str | None = None) -> StreamingResponse:
    """The caller's translation memory as a TMX 1.4b file (each unit's origin, and a model entry's signature, in
    its ``<prop>``s)."""
    serving, scope = _serving(request, key)
    return StreamingResponse(
        serving.export(scope, origin),
        media_type="application/x-tmx+xml; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="batchmt-memory.tmx"'},
    )


@router.delete("/v1/memory", responses={401: {}, 403: {}, 409: {}, 422: {}})
async def purge_memory(
    request: Request, source: str | None = None, origin: Origin | None = None, key: str | None = None
) -> MemoryPurge:
    """Purge the caller's memory: everything, or the entries of one English sentence (``source``) and/or of one
    origin (``human``: what was imported; ``model``: the model's remembered answers)."""
    serving, scope = _serving(request, key)
    return await serving.purge(scope, source, origin)


@router.get("/v1/memory", responses={401: {}, 403: {}})
async def memory_info(request: Request, key: str | None = None) -> MemoryInfo:
    serving, scope = _serving(request, key)
    return await serving.info(scope)


def install_memory(app: FastAPI) -> None:
    """Add the translation memory API to a gateway app (the memory is the jobs runtime's, on the store)."""
    app.include_router(router)
