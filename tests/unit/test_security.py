import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from delivery_service.domain.principal import Principal
from delivery_service.security.passwords import hash_password, verify_password
from delivery_service.security.tokens import TokenService

SECRET = "unit-test-secret-" + "0123456789abcdef" * 4
WHO = Principal(uuid.uuid4(), "student1", "student")


def tokens(**overrides: object) -> TokenService:
    values: dict[str, object] = {
        "secret": SECRET,
        "issuer": "examserver",
        "audience": "examserver",
        "ttl_seconds": 60,
    }
    values.update(overrides)
    return TokenService(**values)  # type: ignore[arg-type]


def test_passwords_are_salted_and_verified() -> None:
    first, second = hash_password("demo", cost=2**8), hash_password("demo", cost=2**8)
    assert first != second
    assert verify_password("demo", first)
    assert not verify_password("Demo", first)
    assert not verify_password("demo", "plain-text")


def test_a_token_round_trips_to_the_principal() -> None:
    service = tokens()
    assert service.verify(service.issue(WHO)) == WHO


@pytest.mark.parametrize(
    "tamper",
    [
        {"issuer": "someone-else"},
        {"audience": "another-app"},
        {"secret": "another-secret-0123456789abcdef01234"},
    ],
)
def test_a_token_from_another_issuer_audience_or_key_is_rejected(tamper: dict[str, str]) -> None:
    with pytest.raises(jwt.InvalidTokenError):
        tokens().verify(tokens(**tamper).issue(WHO))


def test_an_expired_token_is_rejected() -> None:
    old = tokens().issue(WHO, now=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(jwt.ExpiredSignatureError):
        tokens().verify(old)


def full_claims() -> dict[str, object]:
    now = datetime.now(UTC)
    return WHO.claims() | {
        "iss": "examserver",
        "aud": "examserver",
        "iat": now,
        "exp": now + timedelta(minutes=1),
    }


@pytest.mark.parametrize("missing", ["exp", "iat", "iss", "aud", "sub"])
def test_a_token_missing_a_required_claim_is_rejected(missing: str) -> None:
    claims = full_claims()
    del claims[missing]
    with pytest.raises(jwt.InvalidTokenError):
        tokens().verify(jwt.encode(claims, SECRET, algorithm="HS256"))


def test_the_algorithm_is_pinned() -> None:
    claims = full_claims()
    with pytest.raises(jwt.InvalidTokenError):
        tokens().verify(jwt.encode(claims, SECRET, algorithm="HS512"))
    unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(jwt.InvalidTokenError):
        tokens().verify(unsigned)
