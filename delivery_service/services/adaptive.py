"""Adaptive sections inside attempts: the stored layout in, the engine's decision out.

The attempt's layout holds, per adaptive section, the configuration and pool pinned when the
attempt was created (`versions` pins every pool item's version) and the log of scored answers.
The candidate holds only the items already chosen; the next one is decided here when they move
on, and `audit` replays the engine over the stored log to show every choice was its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from delivery_service.services.bank import content_of
from delivery_service.storage.models import Attempt, Item
from test_assembly.adaptive import ENDED, BankItem, Params, SectionState, params_of, replay
from test_assembly.assembly import Form
from test_assembly.scoring import method


def calibrated(rows: Mapping[str, Item]) -> dict[str, Params]:
    """IRT parameters of the items an adaptive section may use: calibrated and machine-scored
    (an essay has no right or wrong the engine could use at once)."""
    return params_of({i: row.irt for i, row in rows.items() if method(content_of(row)) != "manual"})


def states_of(layout: Mapping[str, Any] | None) -> dict[str, SectionState]:
    return {k: SectionState.from_json(v) for k, v in (layout or {}).get("adaptive", {}).items()}


async def bank_of(
    s: AsyncSession, layout: Mapping[str, Any], state: SectionState
) -> list[BankItem]:
    """The section's pool as the engine sees it, from the pinned item versions."""
    versions = layout["versions"]
    ids = [uuid.UUID(versions[i]) for i in state.pool]
    rows = {str(r.id): r for r in await s.scalars(select(Item).where(Item.id.in_(ids)))}
    params = calibrated({i: rows[versions[i]] for i in state.pool})
    return [BankItem(i, params[i], frozenset(rows[versions[i]].tags or [])) for i in state.pool]


def planned_total(layout: Mapping[str, Any] | None, delivered: int) -> int:
    """Items delivered so far plus what running adaptive sections may still add (at most)."""
    if not layout or not layout.get("adaptive"):
        return delivered
    states = states_of(layout)
    more = 0
    for section in Form.from_json(layout).sections:
        state = states.get(section.identifier)
        if state is not None and state.stopped is None:
            more += max(state.config.max_items - len(section.items), 0)
    return delivered + more


def frontier(layout: Mapping[str, Any] | None, identifier: str) -> tuple[str, SectionState] | None:
    """The running adaptive section whose current (last chosen) item is `identifier`."""
    if not layout or not layout.get("adaptive"):
        return None
    states = states_of(layout)
    for section in Form.from_json(layout).sections:
        state = states.get(section.identifier)
        if state and state.stopped is None and section.items and section.items[-1] == identifier:
            return section.identifier, state
    return None


def with_step(
    layout: Mapping[str, Any], section_id: str, state: SectionState, chosen: str | None
) -> dict[str, Any]:
    """A new layout (a new object, so the JSON column is seen as changed) after one step."""
    form = Form.from_json(layout)
    if chosen is not None:
        next(s for s in form.sections if s.identifier == section_id).items.append(chosen)
    adaptive = dict(layout["adaptive"]) | {section_id: state.as_json()}
    return form.as_json() | {"versions": layout["versions"], "adaptive": adaptive}


def form_of(layout: Mapping[str, Any]) -> list[str]:
    """The attempt's item versions in delivery order, rebuilt from the layout."""
    return [layout["versions"][i] for i in Form.from_json(layout).items]


async def audit(s: AsyncSession, attempt: Attempt) -> list[dict[str, Any]]:
    """Replay the engine over each adaptive section's stored log and compare."""
    layout = attempt.layout or {}
    sections = {sec.identifier: sec for sec in Form.from_json(layout).sections} if layout else {}
    out = []
    for section_id, state in states_of(layout).items():
        bank = await bank_of(s, layout, state)
        steps = replay(state.config, bank, state.log, seed=attempt.seed or "", label=section_id)
        delivered = sections[section_id].items
        rows = []
        for n, step in enumerate(steps):
            given = delivered[n] if n < len(delivered) else None
            rows.append(
                {
                    "n": n,
                    "engine_choice": step.item,
                    "delivered": given,
                    "score": state.log[n][1] if n < len(state.log) else None,
                    "theta": step.estimate.theta,
                    "se": step.estimate.se,
                    "stop": step.reason,
                }
            )
        if state.stopped == ENDED:
            # The attempt ended on the last logged item: the engine chose nothing after it.
            consistent = all(r["engine_choice"] == r["delivered"] for r in rows[:-1])
            consistent = consistent and rows[-1]["delivered"] is None
        else:
            consistent = all(r["engine_choice"] == r["delivered"] for r in rows)
            consistent = consistent and steps[-1].reason == state.stopped
        out.append(
            {
                "section": section_id,
                "config": state.config.model_dump(mode="json"),
                "pool_size": len(state.pool),
                "steps": rows,
                "stopped": state.stopped,
                "theta": state.theta,
                "se": state.se,
                "consistent": consistent,
            }
        )
    return out
