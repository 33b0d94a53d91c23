"""The session WebSocket, `/api/v1/sessions/{id}/ws` (source 002's addendum).

Students auto-join on connect and leave on disconnect; they report monitoring events (written
before they are broadcast) and may answer through it. Proctors (the class's teachers, admins)
watch: they subscribe to the session channel and the proctor feed, which only their workers carry.

A student listens to three channels: the session's, their own participant channel, and their
attempt's once they have one. Each event's `seq` is `kind:epoch:offset`; reconnect with
`last_event_id` set to the comma-separated latest `seq` of each kind to receive what was missed.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, WebSocket

from delivery_service.api.ws import messages as p
from delivery_service.api.ws import session_protocol as sp
from delivery_service.api.ws.integrity_messages import batch_of, recorded_data, reported
from delivery_service.api.ws.lifecycle import LiveConnection
from delivery_service.domain.errors import AttemptNotInProgress, Conflict, Forbidden
from delivery_service.live.bus import RESYNC, Event
from delivery_service.live.keys import (
    attempt_channel,
    participant_channel,
    proctor_channel,
    session_channel,
)
from delivery_service.read_models.attempts import Timer
from delivery_service.read_models.classes import UserOut
from delivery_service.runtime import Runtime

router = APIRouter()

STUDENT_FORWARDED = frozenset(
    {
        "session_status_changed",
        "waiting_room_opened",
        "session_completed",
        "notice",
        "accommodation_changed",
        "integrity_warning",
        "assessment_completed",
    }
)


@router.websocket("/sessions/{session_id}/ws")
async def session_socket(websocket: WebSocket, session_id: uuid.UUID) -> None:
    runtime: Runtime = websocket.app.state.runtime
    await SessionConnection(websocket, runtime, session_id).serve()


def parse_positions(value: str) -> dict[str, tuple[str, int]]:
    positions: dict[str, tuple[str, int]] = {}
    for part in value.split(","):
        kind, _, rest = part.strip().partition(":")
        epoch, _, offset = rest.partition(":")
        if kind and epoch and offset.isdigit():
            positions[kind] = (epoch, int(offset))
    return positions


class SessionConnection(LiveConnection):
    kind = "session"
    adapter = sp.session_client_message
    client_types = sp.SESSION_CLIENT_TYPES

    def __init__(self, websocket: WebSocket, runtime: Runtime, session_id: uuid.UUID) -> None:
        super().__init__(websocket, runtime)
        self.session_id = session_id
        self.ticket_scope = ("session_id", str(session_id))
        self.scope = f"s:{session_id}"
        self.is_proctor = False
        self.attempt_id: uuid.UUID | None = None
        self._problem: Conflict | None = None

    # ---- admission and greeting -------------------------------------------------------------

    async def admit(self) -> None:
        """Proctor or student, and for a student the join and the connection's ledger entry:
        one transaction (services/greeting.py)."""
        admission = await self.rt.greeter.admit(self.who, self.session_id, self.arrival())
        self.is_proctor = admission.proctor
        self.attempt_id = admission.attempt_id
        self._problem = admission.problem

    def channels(self) -> dict[str, str]:
        sid = str(self.session_id)
        if self.is_proctor:
            return {"session": session_channel(sid), "proctor": proctor_channel(sid)}
        kinds = {
            "session": session_channel(sid),
            "participant": participant_channel(sid, str(self.who.user_id)),
        }
        if self.attempt_id is not None:
            kinds["attempt"] = attempt_channel(str(self.attempt_id))
        return kinds

    async def on_open(self) -> None:
        """Subscribe (live events held), read positions and missed events, take ownership,
        then `connected`, the missed events, the state, and only then the held live events:
        nothing the client is sent can be older than what came before it."""
        channels = self.channels()
        last = self.ws.query_params.get("last_event_id")
        asked = parse_positions(last) if last else {}
        resume = {channels[kind]: asked[kind] for kind in asked if kind in channels}
        readings = await self.follow_all(
            {channel: self._listener(kind) for kind, channel in channels.items()}, resume
        )
        if not self.is_proctor:
            previous = await self.take_ownership(self.scope, channels["participant"])
            await self.observe_superseded(
                previous, attempt_id=self.attempt_id, session_id=self.session_id
            )
        recovered = None
        if last:  # every channel the client named must have been replayed in full
            recovered = bool(asked) and all(readings[c].recovered for c in resume)
        positions = {}
        for kind, channel in channels.items():
            epoch, offset = readings[channel].position
            positions[kind] = f"{kind}:{epoch}:{offset}"
        user = UserOut(id=self.who.user_id, username=self.who.username, role=self.who.role)
        await self.send(
            sp.Connected(
                data=sp.ConnectedData(
                    session_id=self.session_id,
                    user=user,
                    role="proctor" if self.is_proctor else "student",
                    connection_id=self.id,
                    recovered=recovered,
                    positions=positions,
                )
            )
        )
        for kind, channel in channels.items():
            for event in readings[channel].missed:
                self._relay(kind, event)
        await self._state_sync()
        self.release_held()
        if self._problem is not None:
            problem = self._problem
            await self.error(problem.code, problem.message, details=problem.details)

    async def _state_sync(self, re: str | None = None) -> None:
        state = await self.rt.greeter.state(
            self.who, self.session_id, proctor=self.is_proctor, attempt_id=self.attempt_id
        )
        data = sp.StateSyncData(
            session=state.session, attempt=state.attempt, participants=state.participants
        )
        await self.send(sp.StateSyncResponse(re=re, data=data))

    async def on_close(self) -> None:
        if self.is_proctor:
            return
        # A superseded socket leaves quietly: the student is still here, on the newer one.
        if await self.release_ownership(self.scope):
            await self.rt.group_sessions.attendance.leave(
                self.who, self.session_id, self.rt.clock.now()
            )

    # ---- messages ---------------------------------------------------------------------------

    async def dispatch(self, message: Any) -> None:
        re = message.id
        match message:
            case p.Heartbeat():
                if not self.is_proctor:
                    await self.ensure_owner(self.scope)
                    await self.rt.group_sessions.attendance.heartbeat(
                        self.who, self.session_id, self.rt.clock.now()
                    )
                await self.send(p.Pong(re=re, data=p.PongData(server_now=self.rt.clock.now())))
            case p.Ping():
                timer, state = await self._timer()
                data = p.TimerData(state=state, timer=timer, client_time=message.data.client_time)
                await self.send(p.TimerMessage(re=re, data=data))
            case sp.StateSyncRequest():
                await self._state_sync(re)
            case sp.AnswerSubmitted():
                attempt_id = await self._student_attempt()
                ack = await self.rt.attempts.answers.save_answer(
                    self.who,
                    attempt_id,
                    item_id=message.data.item_id,
                    response=message.data.response,
                    client_seq=message.data.client_seq,
                    connection_id=self.id,
                )
                await self.send(p.AnswerFeedback(re=re, data=ack))
            case sp.ProgressUpdate():
                attempt_id = await self._student_attempt()
                current = await self.rt.attempts.navigation.navigate(
                    self.who, attempt_id, message.data.position
                )
                await self.send(p.Question(re=re, data=current))
            case p.TabViolation() | p.TextHighlighted() | p.IntegrityEvent():
                await self._student_only()
                (recorded,) = await self.rt.evidence.events.record(
                    self.who, [reported(message)], session_id=self.session_id
                )
                await self.send(p.EventRecorded(re=re, data=recorded_data(recorded)))
            case p.IntegrityBatch():
                await self._student_only()
                acks = await self.rt.evidence.events.record(
                    self.who, batch_of(message), session_id=self.session_id
                )
                await self.send(p.EventsRecorded(re=re, data=[recorded_data(a) for a in acks]))

    async def _student_only(self) -> None:
        if self.is_proctor:
            raise Forbidden("only students send this")
        await self.ensure_owner(self.scope)

    async def _student_attempt(self) -> uuid.UUID:
        await self._student_only()
        if self.attempt_id is None:
            raise AttemptNotInProgress("not_started")
        return self.attempt_id

    async def _timer(self) -> tuple[Timer, str | None]:
        if self.attempt_id is not None:
            progress = await self.rt.attempts.reads.progress(self.who, self.attempt_id)
            return progress.timer, progress.state
        session = await self.rt.group_sessions.lifecycle.get(self.who, self.session_id)
        now = self.rt.clock.now()
        if session.ends_at is not None and session.state == "in_progress":
            remaining = max(int((session.ends_at - now).total_seconds() * 1000), 0)
            return Timer(
                deadline=session.ends_at, server_now=now, remaining_ms=remaining, running=True
            ), session.state
        return Timer(
            deadline=None,
            server_now=now,
            remaining_ms=session.time_limit_seconds * 1000,
            running=False,
        ), session.state

    # ---- events -----------------------------------------------------------------------------

    def _listener(self, kind: str) -> Any:
        def listener(event: Event) -> None:
            self._relay(kind, event)

        return listener

    def _relay(self, kind: str, event: Event) -> None:
        seq = f"{kind}:{event.epoch}:{event.offset}"
        if event.type == RESYNC:
            self.spawn(self._state_sync())
        elif event.type == "superseded":
            if event.data.get("connection_id") == self.id:
                self.supersede()
        elif self.is_proctor:
            self.push_event(event, (kind, "event"), lambda: self._forwarded(seq, event))
        elif event.type == "session_started":
            self._student_started(seq, event.data)
        elif event.type == "timer":
            self.push_event(
                event,
                (kind, "timer"),
                lambda: p.TimerMessage(seq=seq, data=p.TimerData.model_validate(event.data)),
            )
        elif event.type in STUDENT_FORWARDED:
            self.push_event(event, (kind, "event"), lambda: self._forwarded(seq, event))

    @staticmethod
    def _forwarded(seq: str, event: Event) -> sp.SessionEvent:
        return sp.SessionEvent(type=event.type, seq=seq, data=event.data)

    def _student_started(self, seq: str, data: dict[str, Any]) -> None:
        """Relay the start with only this student's own assignment, and follow their attempt."""
        mine = data.get("assignments", {}).get(str(self.who.user_id))
        personal = {k: v for k, v in data.items() if k not in ("assignments", "connected_students")}
        personal["attempt_id"] = mine["attempt_id"] if mine else None
        personal["deadline"] = mine["deadline"] if mine else None
        self.push(sp.SessionEvent(type="session_started", seq=seq, data=personal))
        if mine and self.attempt_id is None:
            self.attempt_id = uuid.UUID(mine["attempt_id"])
            self.spawn(
                self.subscribe(attempt_channel(mine["attempt_id"]), self._listener("attempt"))
            )
        elif not mine:
            # Connected too late to be counted at the start: join now, the way a late joiner does.
            self.spawn(self._late_join())

    async def _late_join(self) -> None:
        joined = await self.rt.group_sessions.attendance.join(self.who, self.session_id)
        if joined.attempt_id is not None and self.attempt_id is None:
            self.attempt_id = joined.attempt_id
            await self.subscribe(attempt_channel(str(joined.attempt_id)), self._listener("attempt"))
        await self._state_sync()
