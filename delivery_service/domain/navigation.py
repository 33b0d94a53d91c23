"""Where a candidate may move: linear tests never go back, nonlinear ones go anywhere."""

from __future__ import annotations

from typing import Literal

from delivery_service.domain.errors import NavigationForbidden, PositionOutOfRange

NavigationMode = Literal["linear", "nonlinear"]
Target = Literal["next", "previous"] | int


def next_position(*, current: int, to: Target, total: int, mode: NavigationMode) -> int:
    if to == "next":
        target = current + 1
    elif to == "previous":
        target = current - 1
    else:
        target = to
    if not 0 <= target < total:
        raise PositionOutOfRange(target, total)
    if mode == "linear" and target < current:
        raise NavigationForbidden(
            "this test is linear: going back is not allowed", current=current, to=target
        )
    return target
