"""The routes of the Batch API (``/v1/files``, ``/v1/batches``): HTTP in, :class:`~.serving.JobsServing` out.

A module-level router, as vLLM's entrypoints have it: each route reads what HTTP carries (the caller, the
multipart form, query parameters) and calls one method of the app's ``JobsServing`` (``app.state.jobs_serving``,
made by the app's lifespan with the store).
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from ..http.middleware import principal_of
from ..protocol.errors import APIError
from .protocol import (
    MAX_EXPIRY_S,
    MIN_EXPIRY_S,
    BatchList,
    BatchObject,
    CreateBatch,
    FileDeleted,
    FileList,
    FileObject,
)
from .serving import Caller, JobsServing, check_key

__all__ = ["router", "install_jobs"]

router = APIRouter(tags=["batch"])


def _serving(request: Request) -> tuple[JobsServing, Caller]:
    jobs: JobsServing = request.app.state.jobs_serving
    rec = principal_of(request)
    check_key(jobs.settings, request, rec)
    return jobs, Caller.of(rec)


@router.post("/v1/files", responses={400: {}, 401: {}, 413: {}, 415: {}, 422: {}})
async def create_file(request: Request) -> FileObject:
    """Upload a JSONL file of requests (multipart form: ``file``, ``purpose=batch``)."""
    jobs, caller = _serving(request)
    limit = jobs.config.max_file_bytes
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise APIError(
            415, "unsupported_media_type", "upload the file as multipart/form-data with the fields 'file' and 'purpose'"
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise APIError(
            413,
            "file_too_large",
            f"the upload is {int(declared)} bytes; files are limited to {limit} bytes",
            param="file",
        )
    form = await request.form(max_files=1, max_fields=8)
    try:
        jobs.check_purpose(form.get("purpose"))
        expires_after = _expires_after(form.get("expires_after[anchor]"), form.get("expires_after[seconds]"))
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise APIError(422, "invalid_request", "the form has no file in the field 'file'", param="file")
        content, filename = await upload.read(limit + 1), upload.filename
    finally:
        await form.close()
    return await jobs.create_file(caller, filename, content, expires_after)


def _expires_after(anchor: object, seconds: object) -> int | None:
    """OpenAI's upload fields ``expires_after[anchor]`` and ``expires_after[seconds]``: the seconds (None: not
    given, the server's retention applies)."""
    if anchor is None and seconds is None:
        return None
    if anchor not in (None, "created_at"):
        raise APIError(
            422, "invalid_expires_after", "expires_after[anchor] must be 'created_at'", param="expires_after"
        )
    try:
        value = int(str(seconds))
    except ValueError:
        value = -1
    if not MIN_EXPIRY_S <= value <= MAX_EXPIRY_S:
        raise APIError(
            422,
            "invalid_expires_after",
            f"expires_after[seconds] must be a whole number from {MIN_EXPIRY_S} to {MAX_EXPIRY_S}",
            param="expires_after",
        )
    return value


@router.delete("/v1/files/{file_id}", responses={404: {}})
async def delete_file(file_id: str, request: Request) -> FileDeleted:
    """Delete a file (the ``openai`` package's ``files.delete``): an upload, or a batch's output or error file."""
    jobs, caller = _serving(request)
    return await jobs.delete_file(caller, file_id)


@router.get("/v1/files")
async def list_files(
    request: Request, purpose: str | None = None, after: str | None = None, limit: int = 20
) -> FileList:
    jobs, caller = _serving(request)
    return await jobs.list_files(caller, purpose, after, limit)


@router.get("/v1/files/{file_id}")
async def get_file(file_id: str, request: Request) -> FileObject:
    jobs, caller = _serving(request)
    return await jobs.get_file(caller, file_id)


@router.get("/v1/files/{file_id}/content")
async def file_content(file_id: str, request: Request) -> Response:
    jobs, caller = _serving(request)
    return Response(await jobs.file_content(caller, file_id), media_type="application/jsonl")


@router.post("/v1/batches", responses={401: {}, 404: {}, 413: {}, 422: {}})
async def create_batch(body: CreateBatch, request: Request) -> BatchObject:
    """Create a batch on an uploaded file; its lines are validated now (bad ones go to the error file)."""
    jobs, caller = _serving(request)
    return await jobs.create_batch(caller, principal_of(request), body)


@router.get("/v1/batches")
async def list_batches(request: Request, after: str | None = None, limit: int = 20) -> BatchList:
    jobs, caller = _serving(request)
    return await jobs.list_batches(caller, after, limit)


@router.get("/v1/batches/{batch_id}")
async def get_batch(batch_id: str, request: Request) -> BatchObject:
    jobs, caller = _serving(request)
    return await jobs.get_batch(caller, batch_id)


@router.post("/v1/batches/{batch_id}/cancel", responses={404: {}, 409: {}})
async def cancel_batch(batch_id: str, request: Request) -> BatchObject:
    """Stop a batch: lines in flight are dropped, what is done stays in the output file."""
    jobs, caller = _serving(request)
    return await jobs.cancel_batch(caller, batch_id)


def install_jobs(app: FastAPI) -> None:
    """Add the jobs API to a gateway app. The app's lifespan owns the :class:`~.serving.JobsRuntime`
    (``app.state.jobs``: it opens the store before the gateway boots, starts the worker once the gateway is
    ready, and stops it, gracefully, before the gateway closes its batcher) and the ``JobsServing`` on it."""
    app.include_router(router)
