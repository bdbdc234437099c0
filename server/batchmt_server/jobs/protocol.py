"""The OpenAI Batch API's objects as pydantic models: what ``/v1/files`` and ``/v1/batches`` take and return
(field for field as OpenAI's, so the official ``openai`` package reads them), plus batchmt's usage numbers."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ..stores import FileRecord, JobRecord

__all__ = [
    "ENDPOINT",
    "CreateBatch",
    "ExpiresAfter",
    "FileDeleted",
    "FileObject",
    "BatchObject",
    "BatchErrors",
    "BatchUsage",
    "RequestCounts",
    "FileList",
    "BatchList",
]

#: the one endpoint a batch's lines may call
ENDPOINT = "/v1/translate"

T = TypeVar("T")


#: OpenAI's bounds of ``expires_after.seconds`` (one hour to 30 days)
MIN_EXPIRY_S, MAX_EXPIRY_S = 3600, 30 * 86400


class ExpiresAfter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    anchor: Literal["created_at"] = "created_at"
    seconds: int = Field(ge=MIN_EXPIRY_S, le=MAX_EXPIRY_S)


class FileDeleted(BaseModel):
    """What ``DELETE /v1/files/{id}`` answers (OpenAI's ``FileDeleted``)."""

    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class CreateBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_file_id: str = Field(min_length=1, max_length=128)
    endpoint: str = Field(description=f"only {ENDPOINT!r} is served")
    completion_window: str = Field(
        "24h",
        description="'24h' (OpenAI's only value), or any of e.g. '90s', '30m', "
        "'2h', '7d'; lines not done by then are written to the error file as expired",
    )
    metadata: dict[str, str] | None = Field(None, description="up to 16 pairs; keys <= 64, values <= 512 characters")
    output_expires_after: ExpiresAfter | None = Field(
        None, description="when the output and error files expire: {'anchor': 'created_at', 'seconds': 3600..2592000}"
    )


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str = "processed"
    expires_at: int | None = None
    status_details: str | None = None

    @classmethod
    def of(cls, f: FileRecord) -> FileObject:
        return cls(
            id=f.id,
            bytes=f.bytes,
            created_at=f.created_at,
            filename=f.filename,
            purpose=f.purpose,
            expires_at=f.expires_at,
        )


class RequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict]


class BatchUsage(BaseModel):
    """OpenAI's usage fields, and batchmt's (the same quantities as a translate response's ``usage``)."""

    input_tokens: int
    input_tokens_details: dict[str, int]
    output_tokens: int
    output_tokens_details: dict[str, int]
    total_tokens: int
    sentences: int
    characters: int
    engine_prompts: float
    memory_hits: int
    cost: float
    baseline_cost: float
    saving: float
    currency: str


class BatchObject(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    model: str | None
    errors: BatchErrors | None
    input_file_id: str
    completion_window: str
    status: str
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    in_progress_at: int | None
    expires_at: int
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: RequestCounts
    metadata: dict[str, str] | None
    usage: BatchUsage

    @classmethod
    def of(cls, j: JobRecord, currency: str = "USD", model: str | None = None) -> BatchObject:
        u = j.usage
        return cls(
            id=j.id,
            endpoint=j.endpoint,
            model=model,
            errors=BatchErrors(data=j.errors) if j.errors else None,
            input_file_id=j.input_file_id,
            completion_window=j.completion_window,
            status=j.status,
            output_file_id=j.output_file_id,
            error_file_id=j.error_file_id,
            created_at=j.created_at,
            in_progress_at=j.in_progress_at,
            expires_at=j.expires_at,
            finalizing_at=j.finalizing_at,
            completed_at=j.completed_at,
            failed_at=j.failed_at,
            expired_at=j.expired_at,
            cancelling_at=j.cancelling_at,
            cancelled_at=j.cancelled_at,
            request_counts=RequestCounts(total=j.total, completed=j.completed, failed=j.failed),
            metadata=j.metadata,
            usage=BatchUsage(
                input_tokens=round(u.prompt_tokens),
                input_tokens_details={"cached_tokens": round(u.cached_prompt_tokens)},
                output_tokens=round(u.completion_tokens),
                output_tokens_details={"reasoning_tokens": 0},
                total_tokens=round(u.prompt_tokens + u.completion_tokens),
                sentences=u.sentences,
                characters=u.characters,
                engine_prompts=round(u.engine_prompts, 3),
                memory_hits=u.memory_hits,
                cost=u.cost,
                baseline_cost=u.baseline_cost,
                saving=u.baseline_cost - u.cost,
                currency=currency,
            ),
        )


class Page(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileList(Page[FileObject]):
    @classmethod
    def of(cls, data: list[FileObject], has_more: bool) -> FileList:
        return cls(
            data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None, has_more=has_more
        )


class BatchList(Page[BatchObject]):
    @classmethod
    def of(cls, data: list[BatchObject], has_more: bool) -> BatchList:
        return cls(
            data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None, has_more=has_more
        )
