"""Error responses → the exception tree."""

from __future__ import annotations

import httpx
import pytest
from sdk_fakes import error_response

import batchmt
from batchmt import errors


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_json", batchmt.BadRequestError),
        (401, "unauthorized", batchmt.AuthenticationError),
        (403, "forbidden", batchmt.PermissionDeniedError),
        (404, "not_found", batchmt.NotFoundError),
        (413, "too_many_sentences", batchmt.PayloadTooLargeError),
        (413, "sentence_too_long", batchmt.PayloadTooLargeError),
        (415, "unsupported_media_type", batchmt.UnsupportedMediaTypeError),
        (422, "empty_sentence", batchmt.UnprocessableEntityError),
        (422, "unsupported_language_pair", batchmt.UnprocessableEntityError),
        (429, "queue_full", batchmt.RateLimitError),
        (500, "internal", batchmt.InternalServerError),
        (502, "bad_gateway", batchmt.InternalServerError),
        (503, "not_ready", batchmt.ServiceUnavailableError),
        (503, "engine_unavailable", batchmt.ServiceUnavailableError),
        (504, "timeout", batchmt.GatewayTimeoutError),
        (418, "teapot", batchmt.APIError),
    ],
)
def test_status_maps_to_exception_with_parsed_body(fake_server, make_mt_client, status, code, cls):
    fake_server.script("/v1/translate", error_response(status, code, "what went wrong", "sentences[0]"))
    client = make_mt_client(max_retries=0)
    with pytest.raises(cls) as info:
        client.translate(["Hello."])
    err = info.value
    assert type(err) is cls
    assert isinstance(err, batchmt.APIError) and isinstance(err, batchmt.BatchmtError)
    assert (err.status, err.code, err.message, err.param) == (status, code, "what went wrong", "sentences[0]")
    assert err.body == {"error": {"code": code, "message": "what went wrong", "param": "sentences[0]"}}
    assert err.response is not None and err.response.status_code == status
    assert str(err) == f"{status} {code}: what went wrong"


def test_5xx_subclasses_share_internal_server_error():
    assert issubclass(batchmt.ServiceUnavailableError, batchmt.InternalServerError)
    assert issubclass(batchmt.GatewayTimeoutError, batchmt.InternalServerError)
    assert errors.error_class_for_status(599) is batchmt.InternalServerError
    assert issubclass(batchmt.APITimeoutError, batchmt.APIConnectionError)
    assert not issubclass(batchmt.APIConnectionError, batchmt.APIError)
    assert issubclass(batchmt.TranslationFailed, batchmt.BatchmtError)


def test_non_json_error_body_keeps_text(fake_server, make_mt_client):
    fake_server.script("/v1/translate", httpx.Response(502, text="<html>Bad Gateway</html>"))
    with pytest.raises(batchmt.InternalServerError) as info:
        make_mt_client(max_retries=0).translate(["x"])
    assert info.value.code is None
    assert info.value.body == "<html>Bad Gateway</html>"
    assert "Bad Gateway" in info.value.message


def test_framework_detail_body_is_used_as_message(fake_server, make_mt_client):
    fake_server.script("/v1/translate", httpx.Response(405, json={"detail": "Method Not Allowed"}))
    with pytest.raises(batchmt.APIError) as info:
        make_mt_client(max_retries=0).translate(["x"])
    assert info.value.status == 405 and info.value.message == "Method Not Allowed"


def test_connection_error_is_translated_once(fake_server, make_mt_client):
    fake_server.script("/v1/translate", httpx.ConnectError("refused"))
    with pytest.raises(batchmt.APIConnectionError) as info:
        make_mt_client(max_retries=0).translate(["x"])
    assert not isinstance(info.value, batchmt.APITimeoutError)
    assert "refused" in str(info.value) and "/v1/translate" in str(info.value)
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_timeout_becomes_api_timeout_error(fake_server, make_mt_client):
    fake_server.script("/v1/translate", httpx.ReadTimeout("slow"))
    with pytest.raises(batchmt.APITimeoutError):
        make_mt_client(max_retries=0).translate(["x"])


def test_success_with_malformed_body_raises_validation_error(fake_server, make_mt_client):
    fake_server.script("/v1/translate", httpx.Response(200, text="not json"))
    fake_server.script("/v1/translate", httpx.Response(200, json={"translations": "nope"}))
    client = make_mt_client()
    with pytest.raises(batchmt.APIResponseValidationError):
        client.translate(["x"])
    with pytest.raises(batchmt.APIResponseValidationError):
        client.translate(["x"])


def test_wrong_number_of_translations_is_detected(fake_server, make_mt_client):
    fake_server.script(
        "/v1/translate",
        httpx.Response(
            200, json={"translations": [{"text": "a", "status": "ok", "error": None}], "usage": {}, "signature": "s"}
        ),
    )
    with pytest.raises(batchmt.APIResponseValidationError, match="1 translations for 2 texts"):
        make_mt_client().translate(["x", "y"])
