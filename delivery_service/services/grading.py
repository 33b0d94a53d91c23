"""The teachers' grading queue, candidates' reviews and results across attempts.

Essays (manually scored items) are marked `needs_grade` when their attempt ends; an attempt's
result is final once none is left. Every grade is an entry in the attempt's ledger chain, and
changing a grade already given needs a reason (`grade_changed`, source staff), because it
changes a candidate's outcome.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain.attempt_machine import FINAL_STATES
from delivery_service.domain.authority import require_reason
from delivery_service.domain.errors import (
    Conflict,
    Forbidden,
    NotFound,
    ReviewNotAllowed,
    UnknownItem,
    Unprocessable,
)
from delivery_service.domain.principal import Principal
from delivery_service.read_models.results import (
    AttemptResult,
    AttemptReview,
    CandidateResult,
    GradeOut,
    GradingTask,
    SectionResult,
)
from delivery_service.services.access import attempts_managed_by, check_attempt
from delivery_service.services.attempts import AttemptService, HeldAttempt, locked_attempt
from delivery_service.services.items import ItemCache
from delivery_service.services.scores import (
    item_feedback,
    item_states,
    policies_of,
    record_result,
    score_attempt,
)
from delivery_service.storage.database import db_now
from delivery_service.storage.models import Attempt, ItemState, Test, User
from test_assembly.feedback import reveals
from test_assembly.interactions import ItemContent
from test_assembly.scoring import combine_attempts, max_score

Status = Literal["pending", "graded", "all"]


def result_of(attempt: Attempt) -> AttemptResult:
    ended = attempt.state in FINAL_STATES
    return AttemptResult(
        attempt_id=attempt.id,
        attempt_number=attempt.attempt_number,
        state=attempt.state,
        score=attempt.score if ended else None,
        max_score=attempt.max_score if ended else None,
        passed=attempt.passed if ended else None,
        pending_grades=attempt.pending_grades,
        final=ended and attempt.pending_grades == 0,
    )


class GradingService:
    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        items: ItemCache,
        attempts: AttemptService,
    ) -> None:
        self._db = db
        self._items = items
        self._attempts = attempts

    async def queue(
        self, principal: Principal, *, test_id: uuid.UUID | None = None, status: Status = "pending"
    ) -> list[GradingTask]:
        """Answered essays of ended attempts of the classes the caller teaches (an admin: all),
        oldest submission first."""
        if not principal.is_staff:
            raise Forbidden("only teachers and admins grade")
        stmt = (
            select(ItemState, Attempt, Test.title, User.username)
            .join(Attempt, Attempt.id == ItemState.attempt_id)
            .join(Test, Test.id == Attempt.test_id)
            .join(User, User.id == Attempt.user_id)
            .where(ItemState.needs_grade.is_(True))
        )
        managed = attempts_managed_by(principal, Attempt.session_id, Attempt.user_id)
        if managed is not None:
            stmt = stmt.where(managed)
        if status == "pending":
            stmt = stmt.where(ItemState.grade.is_(None))
        elif status == "graded":
            stmt = stmt.where(ItemState.grade.is_not(None))
        if test_id is not None:
            stmt = stmt.where(Attempt.test_id == test_id)
        async with self._db() as s:
            rows = (await s.execute(stmt.order_by(Attempt.ended_at, Attempt.id).limit(500))).all()
            contents = await self._items.many(s, list({str(st.item_id) for st, *_ in rows}))
            by_id = {item.item_id: item for item in contents}
            return [
                task_of(st, attempt, title, username, by_id[str(st.item_id)])
                for st, attempt, title, username in rows
            ]

    async def grade(
        self,
        principal: Principal,
        attempt_id: uuid.UUID,
        item_identifier: str,
        *,
        score: float,
        reason: str | None,
    ) -> GradeOut:
        if not principal.is_staff:
            raise Forbidden("only teachers and admins grade")
        async with self._db() as s:
            async with s.begin():
                attempt = await check_attempt(
                    s, principal, attempt_id, await locked_attempt(s, attempt_id), "staff"
                )
                if attempt.state not in FINAL_STATES:
                    raise Conflict(
                        "attempt_not_final",
                        "essays are graded once the attempt has ended",
                        state=attempt.state,
                    )
                test = await s.get(Test, attempt.test_id)
                if test is None:  # pragma: no cover - foreign key guarantees it
                    raise NotFound("test", attempt.test_id)
                form = await self._items.many(s, attempt.form)
                item = next((i for i in form if i.identifier == item_identifier), None)
                if item is None:
                    raise UnknownItem(item_identifier)
                states = await item_states(s, attempt.id)
                state = states.get(uuid.UUID(item.item_id))
                if state is None or not state.needs_grade:
                    raise Conflict(
                        "not_gradable",
                        "this item is not an answered essay waiting for a teacher's grade",
                        item_id=item_identifier,
                    )
                top = max_score(item)
                if score > top + 1e-9:
                    raise Unprocessable(
                        "grade_out_of_range",
                        f"a grade is between 0 and the item's {top} points",
                        max_score=top,
                    )
                previous = state.grade
                loaded = HeldAttempt(s, attempt, test, await db_now(s))
                event = "item_graded" if previous is None else "grade_changed"
                if previous is not None:
                    require_reason(principal, event, reason)
                was_pending = attempt.pending_grades
                state.grade, state.graded_by, state.graded_at = score, principal.user_id, loaded.now
                record_result(attempt, score_attempt(attempt, test, form, states))
                await self._attempts.context.log(
                    loaded, event, "staff", actor=principal.user_id, reason=reason,
                    payload={"item_id": item_identifier, "grade": score, "previous": previous,
                             "max_score": top, "score": attempt.score},
                )  # fmt: skip
                if was_pending and attempt.pending_grades == 0:
                    await self._attempts.context.log(
                        loaded, "result_final", "server",
                        payload={"score": attempt.score, "max_score": attempt.max_score,
                                 "passed": attempt.passed},
                    )  # fmt: skip
                username = await s.scalar(select(User.username).where(User.id == attempt.user_id))
                task = task_of(state, attempt, test.title, username or "", item)
                return GradeOut(task=task, result=result_of(attempt))

    # ---- what candidates (and staff) see afterwards -----------------------------------------

    async def review(self, principal: Principal, attempt_id: uuid.UUID) -> AttemptReview:
        async with self._db() as s:
            attempt = await check_attempt(
                s, principal, attempt_id, await s.get(Attempt, attempt_id), "read"
            )
            test = await s.get(Test, attempt.test_id)
            if test is None:  # pragma: no cover - foreign key guarantees it
                raise NotFound("test", attempt.test_id)
            policies = policies_of(test)
            if attempt.state not in FINAL_STATES:
                raise Conflict(
                    "attempt_not_final", "the review opens when the attempt has ended",
                    state=attempt.state,
                )  # fmt: skip
            level = "full" if principal.is_staff else policies.review
            if level == "none":
                raise ReviewNotAllowed("this test does not show results to candidates")
            form = await self._items.many(s, attempt.form)
            states = await item_states(s, attempt.id)
            scored = score_attempt(attempt, test, form, states)
            items = None
            if level in ("responses", "full"):
                shown = policies.model_copy(update={"review": level})
                items = [item_feedback(item, states, shown) for item in form]
            return AttemptReview(
                review=level,
                result=result_of(attempt),
                sections=[
                    SectionResult(
                        identifier=sec.identifier,
                        score=sec.score,
                        max_score=sec.max_score,
                        pending=sec.pending,
                    )
                    for sec in scored.sections
                ],
                items=items,
                ability=_ability(attempt),
            )

    async def results(
        self, principal: Principal, test_id: uuid.UUID, *, user_id: uuid.UUID | None = None
    ) -> list[CandidateResult]:
        """Each candidate's result across attempts: staff see the candidates of the classes
        they teach (an admin: all); a candidate sees only their own, and only when the review
        policy shows scores."""
        async with self._db() as s:
            test = await s.get(Test, test_id)
            if test is None:
                raise NotFound("test", test_id)
            policies = policies_of(test)
            if not principal.is_staff:
                if not reveals(policies, "score"):
                    raise ReviewNotAllowed("this test does not show results to candidates")
                user_id = principal.user_id
            stmt = (
                select(Attempt, User.username)
                .join(User, User.id == Attempt.user_id)
                .where(Attempt.test_id == test_id)
                .order_by(User.username, Attempt.attempt_number)
            )
            if user_id is not None:
                stmt = stmt.where(Attempt.user_id == user_id)
            managed = (
                attempts_managed_by(principal, Attempt.session_id, Attempt.user_id)
                if principal.is_staff
                else None
            )
            if managed is not None:
                stmt = stmt.where(managed)
            grouped: dict[uuid.UUID, tuple[str, list[Attempt]]] = {}
            for attempt, username in await s.execute(stmt):
                grouped.setdefault(attempt.user_id, (username, []))[1].append(attempt)
            return [
                _candidate_result(test, uid, username, attempts)
                for uid, (username, attempts) in grouped.items()
            ]


def _candidate_result(
    test: Test, user_id: uuid.UUID, username: str, attempts: list[Attempt]
) -> CandidateResult:
    policies = policies_of(test)
    results = [result_of(a) for a in attempts]
    final = [(r.attempt_number, r.score or 0.0) for r in results if r.final]
    maxima = [r.max_score for r in results if r.final and r.max_score is not None]
    combined = combine_attempts(policies.attempt_scoring, final)
    top = max(maxima) if maxima else None
    passed = None
    if combined is not None and top is not None and policies.pass_mark is not None:
        passed = combined >= policies.pass_mark * top - 1e-9
    return CandidateResult(
        test_id=test.id,
        user_id=user_id,
        username=username,
        attempt_scoring=policies.attempt_scoring,
        attempts=results,
        result=combined,
        max_score=top,
        passed=passed,
    )


def _ability(attempt: Attempt) -> dict[str, Any] | None:
    adaptive = (attempt.layout or {}).get("adaptive")
    if not adaptive:
        return None
    return {
        section: {k: v for k, v in state.items() if k in ("theta", "se", "stopped")}
        for section, state in adaptive.items()
    }


def task_of(
    state: ItemState, attempt: Attempt, title: str, username: str, item: ItemContent
) -> GradingTask:
    return GradingTask(
        attempt_id=attempt.id,
        test_id=attempt.test_id,
        test_title=title,
        candidate_id=attempt.user_id,
        candidate=username,
        item_id=item.identifier,
        item_version_id=uuid.UUID(item.item_id),
        prompt=item.body.get("prompt"),
        response=state.response,
        max_score=max_score(item),
        submitted_at=attempt.ended_at,
        grade=state.grade,
        graded_by=state.graded_by,
        graded_at=state.graded_at,
    )
