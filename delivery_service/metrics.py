"""Prometheus metrics of one worker (`GET /metrics`).

Each runtime owns its registry, so several apps in one process (the test suite) never share or
double-register a metric. In production each worker is its own process and its own scrape
target; prometheus-client's multiprocess mode is not needed as long as one process serves one
port (compose and Kubernetes run one worker per container).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LAG = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
PAUSE = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.sockets_open = Gauge(
            "examserver_sockets_open", "open WebSockets by kind", ["kind"], registry=r
        )
        self.messages_in = Counter(
            "examserver_ws_messages_in_total", "client messages received, by type", ["type"],
            registry=r,
        )  # fmt: skip
        self.messages_out = Counter(
            "examserver_ws_messages_out_total", "server messages queued, by type", ["type"],
            registry=r,
        )  # fmt: skip
        self._out: dict[str, Any] = {}
        self.answer_save = Histogram(
            "examserver_answer_save_seconds",
            "from receiving an answer to its durable acknowledgement (commit included)",
            buckets=LATENCY,
            registry=r,
        )
        self.fanout = Histogram(
            "examserver_fanout_seconds",
            "from an event's publish (any worker) to its dispatch to this worker's sockets",
            buckets=LATENCY,
            registry=r,
        )
        self.expiry_lag = Histogram(
            "examserver_expiry_lag_seconds",
            "from an attempt's deadline plus grace to the moment it was expired",
            buckets=LAG,
            registry=r,
        )
        self.redis_errors = Counter(
            "examserver_redis_errors_total", "Redis failures, by where", ["where"], registry=r
        )
        self.database_errors = Counter(
            "examserver_database_errors_total", "database failures, by where", ["where"],
            registry=r,
        )  # fmt: skip
        self.connections_refused = Counter(
            "examserver_ws_refused_total",
            "new WebSockets turned away, by reason (rate: before any work; busy: no greeting slot)",
            ["reason"],
            registry=r,
        )
        self.resyncs = Counter(
            "examserver_resyncs_total",
            "socket channels repaired after a pub/sub outage: replayed from the stream, or a "
            "database snapshot when the stream could not fill the gap",
            ["outcome"],
            registry=r,
        )
        self.timer_rebuilds = Counter(
            "examserver_timer_rebuilds_total",
            "times this worker rebuilt Redis timers from the database's running attempts",
            registry=r,
        )
        self.loop_lag = Histogram(
            "examserver_event_loop_lag_seconds",
            "how much later than asked the worker's event loop woke from a short sleep",
            buckets=PAUSE,
            registry=r,
        )
        self.gc_pause = Histogram(
            "examserver_gc_pause_seconds",
            "time the garbage collector held the worker, by generation",
            ["generation"],
            buckets=PAUSE,
            registry=r,
        )
        self.queue_drops = Counter(
            "examserver_send_queue_drops_total",
            "sockets closed because they could not keep up with their send queue",
            registry=r,
        )

    def message_out(self, type_: str) -> None:
        """Count a queued message. Called once per message per socket, so the labelled child
        is looked up once per type (prometheus-client's `labels` takes a lock every call)."""
        child = self._out.get(type_)
        if child is None:
            child = self._out[type_] = self.messages_out.labels(type_)
        child.inc()

    def failure(self, where: str, error: BaseException) -> None:
        """Count a failure against the service it came from, if it came from one."""
        if isinstance(error, RedisError):
            self.redis_errors.labels(where).inc()
        elif isinstance(error, SQLAlchemyError):
            self.database_errors.labels(where).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
