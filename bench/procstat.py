"""CPU time of processes, from /proc: what a benchmark's figures cost, and who paid for it.

On this machine the workers, PostgreSQL, Redis, nginx and the harness share two cores, so a
wall-clock figure alone cannot say whether the server was slow or merely starved.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, float] | None:
    """(command name, user + system seconds) of a live process, None if it is gone."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        raw = Path(f"/proc/{pid}/stat").read_text()
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()
        return name, (int(fields[11]) + int(fields[12])) / TICK
    return None


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU of these processes so far (gone ones count nothing)."""
    return sum(stat[1] for pid in pids if (stat := _stat(pid)) is not None)


def cpu_by_group(named: Mapping[int, str]) -> Counter[str]:
    """CPU seconds of every process so far, by group: the pids in `named` under their given
    name, the rest under their command name (postgres, redis-server, nginx, ...)."""
    tally: Counter[str] = Counter()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            tally[named.get(int(entry.name), stat[0])] += stat[1]
    return tally


def cores_used(before: Counter[str], after: Counter[str], seconds: float) -> dict[str, float]:
    """Cores each group kept busy between two tallies (the main ones, largest first)."""
    used = {k: (after[k] - before.get(k, 0.0)) / seconds for k in after}
    return {k: round(v, 2) for k, v in sorted(used.items(), key=lambda kv: -kv[1]) if v >= 0.01}
