"""What runs after a transaction committed: timers and events in Redis.

These steps never turn a committed write into a reported failure: if Redis is unreachable the
step is logged and the sweepers' reconcile pass rebuilds what it missed (DESIGN.md §2 rule 4).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

AfterCommit = Callable[[], Awaitable[Any]]


async def run_safely(pending: Awaitable[Any]) -> None:
    try:
        await pending
    except Exception:
        log.warning("post-commit Redis step failed; reconcile will repair it", exc_info=True)
