"""Pure pieces of the edges: rate limiting, log scrubbing, settings, the protocol contract."""

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from delivery_service.api.ws import attempt_protocol as protocol
from delivery_service.api.ws.schema import json_schema
from delivery_service.domain.token_bucket import TokenBucket
from delivery_service.logs import scrub
from delivery_service.settings import INSECURE_SECRET, Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_token_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] = 0.5
    assert bucket.take() is True
    assert bucket.take() is False


def test_tickets_tokens_and_bearer_values_never_reach_a_log_line() -> None:
    line = 'GET /api/v1/attempts/x/ws?ticket=abc123&last_event_id=e:1 "Bearer eyJ.a.b" token=zzz'
    cleaned = scrub(line)
    assert "abc123" not in cleaned
    assert "eyJ.a.b" not in cleaned
    assert "zzz" not in cleaned
    assert "last_event_id=e:1" in cleaned


def test_production_refuses_the_built_in_secret() -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(environment="production", jwt_secret=INSECURE_SECRET)
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(environment="production", jwt_secret="short")


def test_source_004_field_names_are_accepted_for_submit_answer() -> None:
    message = protocol.client_message.validate_python(
        {
            "type": "submit_answer",
            "data": {"question_id": "q1", "selected_option": "A", "client_seq": 1},
        }
    )
    assert isinstance(message, protocol.SubmitAnswer)
    assert (message.data.item_id, message.data.response) == ("q1", "A")


def test_unknown_fields_and_wrong_types_are_refused() -> None:
    with pytest.raises(ValidationError):
        protocol.client_message.validate_python(
            {"type": "flag", "data": {"item_id": "q1", "flagged": "maybe"}}
        )
    with pytest.raises(ValidationError):
        protocol.client_message.validate_python({"type": "heartbeat", "data": {"x": 1}})


def test_every_client_type_is_in_the_union() -> None:
    schema = protocol.client_message.json_schema()
    assert set(schema["discriminator"]["mapping"]) == protocol.CLIENT_TYPES


def test_the_published_json_schema_matches_the_code() -> None:
    published = json.loads((DOCS / "ws-protocol.schema.json").read_text())
    assert published == json.loads(json.dumps(json_schema(), sort_keys=True)), (
        "docs/ws-protocol.schema.json is stale: run `examserver ws-schema --output "
        "docs/ws-protocol.schema.json`"
    )


def test_backing_service_failures_get_retryable_codes_and_nothing_else_does() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from delivery_service.api.errors import unavailable_code

    assert unavailable_code(RedisConnectionError("gone")) == "redis_unavailable"
    assert unavailable_code(PoolTimeout("QueuePool limit reached")) == "database_unavailable"
    assert unavailable_code(OperationalError("SELECT 1", {}, Exception("down"))) == (
        "database_unavailable"
    )
    assert unavailable_code(ValueError("a bug")) is None
