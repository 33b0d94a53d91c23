"""The ledger's hash chain: how a link is sealed and how a chain is verified.

Each event is sealed with HMAC-SHA256 over its canonical JSON and the previous link's seal, so a
row changed, removed or inserted in the middle breaks every later link, and a forger who can write
to the database but does not hold the ledger key cannot re-seal the rest. The chain's head (last
seq and seal, kept beside the rows) catches events cut off the end.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

GENESIS = "0" * 64

Problem = Literal["seal_mismatch", "prev_mismatch", "seq_gap", "truncated", "head_mismatch"]


def moment(value: datetime | None) -> str | None:
    """One text form per instant, whatever the backend returns (microseconds, UTC)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def canonical(body: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: the same bytes for the same facts on every machine.
    NaN and infinities are refused rather than written as non-JSON."""
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def seal(key: bytes, prev_hash: str, body: Mapping[str, Any]) -> str:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(prev_hash.encode())
    mac.update(b"\n")
    mac.update(canonical(body))
    return mac.hexdigest()


def digest(value: Any) -> str:
    """A response or payload too large for the ledger is chained by its SHA-256."""
    return hashlib.sha256(canonical({"v": value})).hexdigest()


@dataclass(frozen=True)
class Link:
    """One stored event as the verifier sees it."""

    event_id: int
    seq: int
    body: Mapping[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Broken:
    seq: int
    event_id: int | None
    problem: Problem
    detail: str


@dataclass(frozen=True)
class Verification:
    chain: str
    events: int
    ok: bool
    first_broken: Broken | None = None
    head_seq: int | None = None


def verify(
    key: bytes, chain: str, links: Iterable[Link], head: tuple[int, str] | None
) -> Verification:
    """Walk a chain in seq order; name the first link that does not hold."""
    expected_prev, expected_seq, count = GENESIS, 1, 0
    last: Link | None = None
    for link in links:
        count += 1
        if link.seq != expected_seq:
            problem: Problem = "seq_gap"
            detail = f"expected event {expected_seq}, found {link.seq}: events are missing"
            return _broken(chain, count, head, expected_seq, link.event_id, problem, detail)
        if link.prev_hash != expected_prev:
            detail = "does not point at the event before it (inserted, removed or reordered)"
            return _broken(chain, count, head, link.seq, link.event_id, "prev_mismatch", detail)
        if not hmac.compare_digest(seal(key, link.prev_hash, link.body), link.hash):
            detail = "its content no longer matches its seal (the row was changed)"
            return _broken(chain, count, head, link.seq, link.event_id, "seal_mismatch", detail)
        expected_prev, expected_seq, last = link.hash, link.seq + 1, link
    if head is not None:
        head_seq, head_hash = head
        if last is None or head_seq > last.seq:
            have = last.seq if last else 0
            detail = f"the chain ends at event {have} but its head says {head_seq}"
            return _broken(chain, count, head, have + 1, None, "truncated", detail)
        if head_seq != last.seq or not hmac.compare_digest(head_hash, last.hash):
            detail = "the chain's head does not match its last event"
            return _broken(chain, count, head, last.seq, last.event_id, "head_mismatch", detail)
    return Verification(chain=chain, events=count, ok=True, head_seq=head[0] if head else None)


def _broken(
    chain: str,
    count: int,
    head: tuple[int, str] | None,
    seq: int,
    event_id: int | None,
    problem: Problem,
    detail: str,
) -> Verification:
    return Verification(
        chain=chain,
        events=count,
        ok=False,
        first_broken=Broken(seq=seq, event_id=event_id, problem=problem, detail=detail),
        head_seq=head[0] if head else None,
    )
