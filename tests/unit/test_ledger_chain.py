"""The ledger's seals: a chain verifies until any part of it is changed, removed or reordered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from integrity.chain import GENESIS, Link, canonical, moment, seal, verify

KEY = b"k" * 32


def build(n: int, key: bytes = KEY) -> list[Link]:
    links, prev = [], GENESIS
    start = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    for seq in range(1, n + 1):
        body: dict[str, Any] = {
            "chain": "attempt:a",
            "seq": seq,
            "type": "answer_saved",
            "payload": {"item_id": f"q{seq}", "client_seq": seq},
            "server_time": moment(start + timedelta(seconds=seq)),
        }
        digest = seal(key, prev, body)
        links.append(Link(event_id=100 + seq, seq=seq, body=body, prev_hash=prev, hash=digest))
        prev = digest
    return links


def head(links: list[Link]) -> tuple[int, str]:
    return (links[-1].seq, links[-1].hash)


def test_an_untouched_chain_verifies() -> None:
    links = build(5)
    result = verify(KEY, "attempt:a", links, head(links))
    assert (result.ok, result.events, result.first_broken) == (True, 5, None)


def test_a_changed_payload_breaks_the_seal_of_that_event() -> None:
    links = build(5)
    body = dict(links[2].body) | {"payload": {"item_id": "q3", "client_seq": 99}}
    links[2] = Link(links[2].event_id, 3, body, links[2].prev_hash, links[2].hash)
    result = verify(KEY, "attempt:a", links, head(links))
    assert result.first_broken is not None
    assert (result.ok, result.first_broken.seq, result.first_broken.problem) == (
        False,
        3,
        "seal_mismatch",
    )
    assert result.first_broken.event_id == 103


def test_a_resealed_row_without_the_key_still_breaks_the_next_link() -> None:
    links = build(4)
    body = dict(links[1].body) | {"type": "forged"}
    forged = seal(b"not the key, guessed" * 2, links[1].prev_hash, body)
    links[1] = Link(links[1].event_id, 2, body, links[1].prev_hash, forged)
    result = verify(KEY, "attempt:a", links, head(links))
    assert result.first_broken is not None
    assert result.first_broken.seq == 2


def test_a_deleted_event_in_the_middle_is_a_gap() -> None:
    links = build(5)
    del links[1]
    result = verify(KEY, "attempt:a", links, head(links))
    assert result.first_broken is not None
    assert (result.first_broken.seq, result.first_broken.problem) == (2, "seq_gap")


def test_events_cut_off_the_end_are_caught_by_the_head() -> None:
    links = build(5)
    tip = head(links)
    result = verify(KEY, "attempt:a", links[:3], tip)
    assert result.first_broken is not None
    assert (result.first_broken.seq, result.first_broken.problem) == (4, "truncated")


def test_a_chain_whose_rows_all_vanished_is_caught_by_the_head() -> None:
    result = verify(KEY, "attempt:a", [], (3, "f" * 64))
    assert result.first_broken is not None
    assert result.first_broken.problem == "truncated"


def test_a_renumbered_event_does_not_point_at_its_predecessor() -> None:
    links = build(4)
    swapped = [links[0], links[2], links[1], links[3]]
    renumbered = [
        Link(x.event_id, i + 1, x.body, x.prev_hash, x.hash) for i, x in enumerate(swapped)
    ]
    result = verify(KEY, "attempt:a", renumbered, head(links))
    assert result.first_broken is not None
    assert (result.first_broken.seq, result.first_broken.problem) == (2, "prev_mismatch")


def test_another_key_verifies_nothing() -> None:
    links = build(2)
    result = verify(b"x" * 32, "attempt:a", links, head(links))
    assert result.first_broken is not None
    assert result.first_broken.seq == 1


def test_canonical_form_ignores_key_order_and_refuses_nan() -> None:
    assert (
        canonical({"b": 1, "a": "é"}) == canonical({"a": "é", "b": 1}) == '{"a":"é","b":1}'.encode()
    )
    with pytest.raises(ValueError, match="JSON compliant"):
        canonical({"x": float("nan")})


def test_one_instant_has_one_text_form_whatever_its_zone() -> None:
    from datetime import timezone

    here = datetime(2026, 11, 22, 10, 0, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    assert moment(here) == "2026-11-22T09:00:00.000005+00:00"
    assert moment(here.astimezone(UTC)) == moment(here)
