"""The generated request id has uuid.uuid4().hex's form (the middleware builds it without a UUID object)."""

import uuid

from batchmt_server.http.middleware import _uuid4_hex


def test_generated_request_ids_are_uuid4_hex():
    ids = {_uuid4_hex() for _ in range(1000)}
    assert len(ids) == 1000
    for h in ids:
        u = uuid.UUID(hex=h)
        assert u.version == 4 and u.variant == uuid.RFC_4122 and u.hex == h
