"""The routes of ``/v1/glossaries``: HTTP in, :class:`~.serving.GlossaryServing` out (``app.state.glossaries``).

``POST /v1/glossaries`` takes DeepL v2's body as JSON (or form-encoded), or a ``multipart/form-data`` upload of a
TMX (or TSV/CSV) file in the field ``file`` with ``name``, ``source_lang``, ``target_lang`` (and
``entries_format``: ``tmx`` | ``tsv`` | ``csv``, by default from the file name, else ``tmx``).
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError

from ..http.middleware import principal_of
from ..jobs.serving import check_key
from ..protocol.errors import APIError
from .protocol import CreateGlossary, GlossaryList, GlossaryObject
from .serving import Caller, GlossaryServing

__all__ = ["router", "install_glossaries"]

router = APIRouter(tags=["glossaries"])


def _serving(request: Request) -> tuple[GlossaryServing, Caller]:
    serving: GlossaryServing | None = getattr(request.app.state, "glossaries", None)
    if serving is None:
        raise APIError(503, "not_ready", "the store is not open yet", headers={"Retry-After": "5"})
    rec = principal_of(request)
    check_key(request.app.state.jobs_serving.settings, request, rec)
    return serving, (Caller() if rec is None else Caller(rec.id, rec.role == "admin"))


def _field(form, name: str, default: str | None = None) -> str:
    value = form.get(name, default)
    if value is None or not isinstance(value, str):
        raise APIError(422, "invalid_request", f"the form has no text field {name!r}", param=name)
    return value


@router.post("/v1/glossaries", status_code=201, responses={401: {}, 409: {}, 413: {}, 415: {}, 422: {}})
async def create_glossary(request: Request) -> GlossaryObject:
    """Create a glossary: DeepL v2's JSON body (``name``, ``source_lang``, ``target_lang``, ``entries``,
    ``entries_format``), the same form-encoded, or a TMX/TSV/CSV file (multipart field ``file``). Every entry is
    checked, and the limits, before anything is stored."""
    serving, caller = _serving(request)
    ctype = request.headers.get("content-type", "").lower()
    if ctype.startswith("application/json"):
        try:
            body = CreateGlossary.model_validate_json(await request.body())
        except ValidationError as exc:
            err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid"}
            where = ".".join(str(p) for p in err["loc"]) or "body"
            raise APIError(422, "invalid_request", f"{where}: {err['msg']}", param=where) from None
        langs, entries = serving.read_entries(
            body.source_lang, body.target_lang, text=body.entries, fmt=body.entries_format
        )
        return await serving.create(caller, body.name, langs, entries)
    if ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form(max_files=1, max_fields=8)
        try:
            name, src, tgt = _field(form, "name"), _field(form, "source_lang", "en"), _field(form, "target_lang", "de")
            upload = form.get("file")
            if upload is None:
                fmt = _field(form, "entries_format", "tsv")
                langs, entries = serving.read_entries(src, tgt, text=_field(form, "entries"), fmt=fmt)
            elif isinstance(upload, str):
                raise APIError(422, "invalid_request", "the field 'file' must be a file", param="file")
            else:
                data = await upload.read()
                suffix = (upload.filename or "").rsplit(".", 1)[-1].lower()
                fmt = _field(form, "entries_format", suffix if suffix in ("tsv", "csv", "tmx") else "tmx")
                if fmt == "tmx":
                    langs, entries = serving.read_entries(src, tgt, tmx=data)
                else:
                    try:
                        text = data.decode("utf-8-sig")
                    except UnicodeDecodeError:
                        raise APIError(422, "invalid_encoding", "the file is not UTF-8 text", param="file") from None
                    langs, entries = serving.read_entries(src, tgt, text=text, fmt=fmt)
        finally:
            await form.close()
        return await serving.create(caller, name, langs, entries)
    raise APIError(
        415,
        "unsupported_media_type",
        "send the glossary as application/json (DeepL v2's body) or a file as multipart/form-data",
    )


@router.get("/v1/glossaries")
async def list_glossaries(request: Request) -> GlossaryList:
    serving, caller = _serving(request)
    return await serving.list(caller)


@router.get("/v1/glossaries/{glossary_id}", responses={404: {}})
async def get_glossary(glossary_id: str, request: Request) -> GlossaryObject:
    serving, caller = _serving(request)
    return await serving.get(caller, glossary_id)


@router.get("/v1/glossaries/{glossary_id}/entries", responses={404: {}})
async def glossary_entries(glossary_id: str, request: Request) -> Response:
    """The entries as TSV (DeepL's ``text/tab-separated-values``), sorted by source term."""
    serving, caller = _serving(request)
    return Response(await serving.entries_tsv(caller, glossary_id), media_type="text/tab-separated-values")


@router.delete("/v1/glossaries/{glossary_id}", status_code=204, responses={404: {}})
async def delete_glossary(glossary_id: str, request: Request) -> Response:
    serving, caller = _serving(request)
    await serving.delete(caller, glossary_id)
    return Response(status_code=204)


def install_glossaries(app: FastAPI) -> None:
    """Add the glossaries API (the app's lifespan puts a :class:`GlossaryServing` on ``app.state.glossaries``)."""
    app.include_router(router)
