"""The windows after an attempt's deadline (DESIGN.md §3, docs/decisions.md "Time").

Two windows follow a deadline. The network grace (a setting) lets an answer sent just before the
deadline count when it arrives a moment after. A test whose deadline policy is `grace` adds its
own submission window, in which answers are refused and only submitting is left. The sweeper
expires the attempt once both are over, so a write and the sweeper never disagree.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol


class DeadlinePolicy(Protocol):
    """The test policies this rule reads (test_assembly's `Policies`)."""

    @property
    def deadline(self) -> str: ...
    @property
    def grace_seconds(self) -> int: ...


def late_window(policies: DeadlinePolicy) -> timedelta:
    """The `grace` deadline policy's submission window after the deadline (else none)."""
    if policies.deadline != "grace":
        return timedelta(0)
    return timedelta(seconds=policies.grace_seconds)


def expiry_grace(network_grace: timedelta, policies: DeadlinePolicy) -> timedelta:
    """When the attempt expires after its deadline: the network grace, plus the test's
    submission window when its deadline policy is `grace` (answers are refused in it)."""
    return network_grace + late_window(policies)
