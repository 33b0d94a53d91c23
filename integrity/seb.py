"""Safe Exam Browser request verification.

SEB sends, with every request it makes, `X-SafeExamBrowser-ConfigKeyHash` =
SHA-256(absolute URL + Config Key) and `X-SafeExamBrowser-RequestHash` =
SHA-256(absolute URL + Browser Exam Key), both hex. Binding the key to the URL means a value
copied from one request does not pass on another; comparing in constant time means the header
cannot be guessed byte by byte. The URL must be the one the browser used: behind a proxy, the
server has to trust its forwarded scheme and host (uvicorn's --proxy-headers).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from integrity.policy import LockdownPolicy

CONFIG_KEY_HEADER = "x-safeexambrowser-configkeyhash"
REQUEST_HASH_HEADER = "x-safeexambrowser-requesthash"


@dataclass(frozen=True)
class SebCheck:
    ok: bool
    code: str = ""
    message: str = ""


def expected_hash(url: str, key: str) -> str:
    return hashlib.sha256((url + key).encode()).hexdigest()


def strip_fragment(url: str) -> str:
    return url.split("#", 1)[0]


def _matches(url: str, sent: str | None, keys: list[str]) -> bool:
    if not sent:
        return False
    sent = sent.strip().lower()
    return any(hmac.compare_digest(expected_hash(url, key), sent) for key in keys)


def check(policy: LockdownPolicy, url: str, headers: Mapping[str, str]) -> SebCheck:
    """Pass when the policy does not require SEB, or every configured kind of key matches."""
    if not policy.require_seb:
        return SebCheck(ok=True)
    url = strip_fragment(url)
    config_sent = headers.get(CONFIG_KEY_HEADER)
    request_sent = headers.get(REQUEST_HASH_HEADER)
    if not config_sent and not request_sent:
        return SebCheck(False, "seb_required", "this test must be taken in Safe Exam Browser")
    if policy.seb_config_keys and not _matches(url, config_sent, policy.seb_config_keys):
        return SebCheck(
            False,
            "seb_key_invalid",
            "Safe Exam Browser's configuration key does not match this test",
        )
    if policy.seb_browser_exam_keys and not _matches(
        url, request_sent, policy.seb_browser_exam_keys
    ):
        return SebCheck(
            False, "seb_key_invalid", "this Safe Exam Browser is not one allowed for this test"
        )
    return SebCheck(ok=True)
