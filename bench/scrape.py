"""The workers' own view of a benchmark: a Prometheus histogram summed over every worker.

The harness measures from its send to its receipt, through its own event loop, nginx and the
socket; the workers time the same answers from receipt to commit. Reading both tells which side
a tail comes from.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import httpx
from prometheus_client.parser import text_string_to_metric_families


async def histogram(ports: Iterable[int], name: str) -> Counter[float]:
    """Cumulative bucket counts (upper bound -> observations at or below it), all workers."""
    buckets: Counter[float] = Counter()
    async with httpx.AsyncClient(timeout=10) as http:
        for port in ports:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            for family in text_string_to_metric_families(text):
                if family.name != name:
                    continue
                for sample in family.samples:
                    if sample.name == f"{name}_bucket":
                        buckets[float(sample.labels["le"])] += sample.value
    return buckets


def summary(before: Counter[float], after: Counter[float]) -> dict[str, float | int | None]:
    """Between two readings: how many, the bucket bound under which 50% and 99% fall, and the
    share above 100 ms and 250 ms (bounds, not interpolations: buckets are all there is)."""
    bounds = sorted(after)
    cumulative = [after[b] - before.get(b, 0) for b in bounds]
    total = cumulative[-1] if cumulative else 0
    if not total:
        return {"count": 0}

    def bound_of(share: float) -> float | None:
        for bound, seen in zip(bounds, cumulative, strict=True):
            if seen >= share * total:
                return None if bound == float("inf") else round(bound * 1000, 1)
        return None

    def above(seconds: float) -> float:
        at_or_below = max((c for b, c in zip(bounds, cumulative, strict=True) if b <= seconds),
                          default=0)  # fmt: skip
        return round(100 * (total - at_or_below) / total, 2)

    return {
        "count": int(total),
        "p50_at_most_ms": bound_of(0.50),
        "p99_at_most_ms": bound_of(0.99),
        "over_100ms_pct": above(0.1),
        "over_250ms_pct": above(0.25),
    }
