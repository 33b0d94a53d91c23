"""The attempt WebSocket, `/api/v1/attempts/{id}/ws`: one candidate delivering one attempt.

On connect: `auth_success`, any events missed since `last_event_id`, the full `attempt_state`,
and the `timer`. One live socket per candidate and attempt across all workers: the newest wins.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket

from delivery_service.api.ws import attempt_protocol as p
from delivery_service.api.ws.integrity_messages import batch_of, recorded_data, reported
from delivery_service.api.ws.lifecycle import LiveConnection
from delivery_service.domain.errors import DomainError
from delivery_service.domain.timing import TimerView
from delivery_service.live.bus import RESYNC, Event, parse_event_id
from delivery_service.live.keys import attempt_channel
from delivery_service.read_models.attempts import AttemptView, Completion, Timer
from delivery_service.read_models.classes import UserOut
from delivery_service.runtime import Runtime

router = APIRouter()


@router.websocket("/attempts/{attempt_id}/ws")
async def attempt_socket(websocket: WebSocket, attempt_id: uuid.UUID) -> None:
    runtime: Runtime = websocket.app.state.runtime
    await AttemptConnection(websocket, runtime, attempt_id).serve()


class AttemptConnection(LiveConnection):
    kind = "attempt"
    adapter = p.client_message
    client_types = p.CLIENT_TYPES

    def __init__(self, websocket: WebSocket, runtime: Runtime, attempt_id: uuid.UUID) -> None:
        super().__init__(websocket, runtime)
        self.attempt_id = attempt_id
        self.scope = str(attempt_id)
        self.channel = attempt_channel(self.scope)
        self.ticket_scope = ("attempt_id", self.scope)
        self._completed_sent = False
        # While this socket's own end_assessment runs, the bus copy of the completion waits here:
        # the reply carries it (with `re`); the copy is sent only if the submit fails.
        self._ending = False
        self._held_completion: Event | None = None

    async def admit(self) -> None:
        """The candidate's own attempt, the SEB check and the connection's ledger entry: one
        transaction (services/greeting.py)."""
        await self.rt.greeter.admit_attempt(self.who, self.attempt_id, self.arrival())

    async def on_open(self) -> None:
        """Subscribe (live events held until the state is sent: see LiveConnection.follow_all),
        take ownership, then `auth_success`, the missed events, the state and the timer."""
        last = self.ws.query_params.get("last_event_id")
        position = parse_event_id(last) if last else None
        resume = {self.channel: position} if position is not None else {}
        readings = await self.follow_all({self.channel: self._on_event}, resume)
        previous = await self.take_ownership(self.scope, self.channel)
        await self.observe_superseded(previous, attempt_id=self.attempt_id)
        reading = readings[self.channel]
        recovered = (reading.recovered if position is not None else False) if last else None
        user = UserOut(id=self.who.user_id, username=self.who.username, role=self.who.role)
        await self.send(
            p.AuthSuccess(
                data=p.AuthSuccessData(
                    user=user,
                    attempt_id=self.attempt_id,
                    connection_id=self.id,
                    recovered=recovered,
                    last_event_id="{}:{}".format(*reading.position),
                )
            )
        )
        for event in reading.missed:
            self._on_event(event)
        await self._send_state()
        self.release_held()

    async def on_close(self) -> None:
        await self.release_ownership(self.scope)

    async def _send_state(self, re: str | None = None) -> AttemptView:
        view = await self.rt.attempts.reads.get(self.who, self.attempt_id)
        await self.send(p.AttemptState(re=re, data=view))
        await self.send(p.TimerMessage(data=p.TimerData(state=view.state, timer=view.timer)))
        return view

    async def dispatch(self, message: Any) -> None:
        who, ident, svc = self.who, self.attempt_id, self.rt.attempts
        re = message.id
        match message:
            case p.Heartbeat():
                await self.ensure_owner(self.scope)
                await self.send(p.Pong(re=re, data=p.PongData(server_now=self.rt.clock.now())))
            case p.Ping():
                timer, state = await self._timer()
                data = p.TimerData(state=state, timer=timer, client_time=message.data.client_time)
                await self.send(p.TimerMessage(re=re, data=data))
            case p.GetProgress():
                await self.send(p.ProgressUpdate(re=re, data=await svc.reads.progress(who, ident)))
            case p.GetQuestion():
                await self.ensure_owner(self.scope)
                index = message.data.index
                current = (
                    await svc.navigation.navigate(who, ident, index)
                    if index is not None
                    else await svc.reads.current(who, ident)
                )
                await self.send(p.Question(re=re, data=current))
            case p.StartAssessment():
                await self.ensure_owner(self.scope)
                view = await svc.reads.get(who, ident)
                if view.state == "not_started":
                    view = await svc.lifecycle.start(who, ident)
                # Starting a running attempt (a reconnecting client) answers with its state.
                await self.send(p.AssessmentStarted(re=re, data=view))
                if view.state == "in_progress":
                    await self.send(p.Question(data=await svc.reads.current(who, ident)))
            case p.SubmitAnswer():
                await self.ensure_owner(self.scope)
                ack = await svc.answers.save_answer(
                    who,
                    ident,
                    item_id=message.data.item_id,
                    response=message.data.response,
                    client_seq=message.data.client_seq,
                    connection_id=self.id,
                )
                await self.send(p.AnswerFeedback(re=re, data=ack))
            case p.Navigate():
                await self.ensure_owner(self.scope)
                current = await svc.navigation.navigate(who, ident, message.data.to)
                await self.send(p.Question(re=re, data=current))
            case p.FlagItem():
                await self.ensure_owner(self.scope)
                flag = await svc.navigation.flag(
                    who, ident, message.data.item_id, message.data.flagged
                )
                await self.send(p.FlagSaved(re=re, data=flag))
            case p.TabViolation() | p.TextHighlighted() | p.IntegrityEvent():
                await self.ensure_owner(self.scope)
                (recorded,) = await self.rt.evidence.events.record(
                    who, [reported(message)], attempt_id=ident
                )
                await self.send(p.EventRecorded(re=re, data=recorded_data(recorded)))
            case p.IntegrityBatch():
                await self.ensure_owner(self.scope)
                acks = await self.rt.evidence.events.record(
                    who, batch_of(message), attempt_id=ident
                )
                await self.send(p.EventsRecorded(re=re, data=[recorded_data(a) for a in acks]))
            case p.EndAssessment():
                await self.ensure_owner(self.scope)
                self._ending = True
                try:
                    completion = await svc.lifecycle.submit(who, ident)
                except DomainError:
                    self._release_held_completion()
                    raise
                finally:
                    self._ending = False
                self._held_completion = None
                self._completed_sent = True
                await self.send(p.AssessmentCompleted(re=re, data=completion))

    async def _timer(self) -> tuple[Timer, str | None]:
        """Answer pings from the Redis timer key when it is there; the database otherwise."""
        deadline_ms = await self.rt.timers.deadline_ms(self.scope)
        now = self.rt.clock.now()
        if deadline_ms is not None:
            deadline = datetime.fromtimestamp(deadline_ms / 1000, UTC)
            remaining = max(int((deadline - now).total_seconds() * 1000), 0)
            return Timer.of(TimerView(deadline, now, remaining, running=True)), "in_progress"
        progress = await self.rt.attempts.reads.progress(self.who, self.attempt_id)
        return progress.timer, progress.state

    def _on_event(self, event: Event) -> None:
        """Called by the bus for every event of this attempt's channel; must not block."""
        if event.type == RESYNC:
            self.spawn(self._send_state())
        elif event.type == "superseded":
            if event.data.get("connection_id") == self.id:
                self.supersede()
        elif event.type == "timer":
            data = p.TimerData.model_validate(event.data)
            self.push(p.TimerMessage(seq=event.event_id, data=data))
        elif event.type == "integrity_warning":
            warning = p.IntegrityWarningData.model_validate(event.data)
            self.push(p.IntegrityWarning(seq=event.event_id, data=warning))
        elif event.type == "assessment_completed":
            if self._ending:
                self._held_completion = event
            else:
                self._forward_completion(event)

    def _forward_completion(self, event: Event) -> None:
        if not self._completed_sent:
            self._completed_sent = True
            data = Completion.model_validate(event.data)
            self.push(p.AssessmentCompleted(seq=event.event_id, data=data))

    def _release_held_completion(self) -> None:
        held, self._held_completion = self._held_completion, None
        if held is not None:
            self._forward_completion(held)
