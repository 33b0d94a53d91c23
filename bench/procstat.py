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


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """Every live process: pid -> (command name, CPU seconds so far)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            found[int(entry.name)] = stat
    return found


def cores_used(
    before: Mapping[int, tuple[str, float]],
    after: Mapping[int, tuple[str, float]],
    seconds: float,
    named: Mapping[int, str],
) -> dict[str, float]:
    """Cores each group kept busy between two readings, largest first: the pids in `named`
    under their given name, the rest by command name (postgres, redis-server, nginx, ...).
    Differenced per process, so one that exits in between takes only its own time along
    (summed by name first, a backend that exited subtracted its whole life)."""
    used: Counter[str] = Counter()
    for pid, (name, cpu) in after.items():
        earlier = before.get(pid)
        start = earlier[1] if earlier is not None and earlier[0] == name else 0.0
        used[named.get(pid, name)] += (cpu - start) / seconds
    return {k: round(v, 2) for k, v in used.most_common() if v >= 0.01}
