"""Prometheus metrics (prometheus-client), defined once; the worker serves them on a port.

Multi-process story: `zns worker` runs the threads pool, so one worker process holds every
counter and `/metrics` on `ZNS_CELERY__METRICS_PORT` shows them all. Several pods (or several
`zns worker` processes) each serve their own endpoint and Prometheus sums them. With Celery's
prefork pool the children would each hold their own registry: that needs prometheus-client's
multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`), which this project does not use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MESSAGES_SENT = Counter("zns_messages_sent_total", "Messages Zalo accepted.", ["account"])
DUPLICATES = Counter(
    "zns_duplicates_total", "Jobs answered from the idempotency record (no Zalo call).", ["account"]
)
FAILURES = Counter(
    "zns_send_failures_total",
    "Zalo or transport failures during a step, by error class and Zalo code.",
    ["account", "error_class", "code"],
)
RETRIES = Counter(
    "zns_retries_total", "Steps rescheduled with a backoff.", ["account", "error_class"]
)
PARKED = Counter("zns_parked_total", "Steps parked in Redis, by reason.", ["account", "reason"])
DEAD_LETTERS = Counter(
    "zns_dead_letters_total", "Steps dead-lettered, by error class.", ["account", "error_class"]
)
JOURNEY_TOKENS = Counter(
    "zns_journey_tokens_created_total", "Journey tokens created (billed on first use).", ["account"]
)
TOKEN_REFRESHES = Counter(
    "zns_token_refreshes_total",
    "OA access-token refresh attempts, by account and outcome (ok, unknown, error type).",
    ["account", "outcome"],
)
SEND_SECONDS = Histogram(
    "zns_send_seconds",
    "Duration of the Zalo send call.",
    ["account"],
    buckets=(0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0),
)
LIMITER_WAIT_SECONDS = Histogram(
    "zns_limiter_wait_seconds",
    "Time a step waited for the account's global rate limiter.",
    ["account"],
    buckets=(0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
)
REDIS_ROUND_TRIPS = Counter(
    "zns_redis_round_trips_total",
    "Round trips to the state Redis (a pipeline or a Lua call is one), from this process.",
)
RESULT_ROUND_TRIPS = Counter(
    "zns_result_round_trips_total",
    "Round trips of the task-result writes (a bulk batch's results are one), from this process.",
)
QUEUED = Counter(
    "zns_lane_waits_total",
    "Steps that joined their account's lane: why is 'rate' (no rate-limit slot soon enough),"
    " 'lane' (steps of the account wait ahead) or 'cap' (in-flight cap reached).",
    ["account", "why"],
)
RELEASED = Counter(
    "zns_lane_released_total", "Steps a feeder released from a lane.", ["account", "lane"]
)
ENQUEUE_TO_SENT = Histogram(
    "zns_enqueue_to_sent_seconds",
    "From the step's enqueue to Zalo's acceptance, by lane (steps whose enqueue the producer API"
    " recorded).",
    ["account", "lane"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400),
)
ORDER_OVERDUE = Counter(
    "zns_order_overdue_total",
    "Numbered steps sent before a lower step of their journey (maximum order wait reached).",
    ["account"],
)
WEBHOOK_EVENTS = Counter(
    "zns_webhook_events_total",
    "Zalo webhook requests by event name (known names, else 'other') and outcome.",
    ["event", "outcome"],
)


class QuotaCollector(Collector):
    """`zns_remaining_quota{account}` read from the shared counter in Redis at scrape time, so
    every pod reports the same, current figure (not the last value one thread happened to set)."""

    def __init__(self, accounts: Sequence[str], remaining: Callable[[str], int | None]) -> None:
        self._accounts = list(accounts)
        self._remaining = remaining

    def collect(self) -> Iterator[Metric]:
        """One gauge sample per account whose counter is known."""
        gauge = GaugeMetricFamily(
            "zns_remaining_quota",
            "The OA's remaining daily quota (shared counter).",
            labels=["account"],
        )
        for account in self._accounts:
            value = self._remaining(account)
            if value is not None:
                gauge.add_metric([account], value)
        yield gauge


def register_quota_gauge(accounts: Sequence[str], remaining: Callable[[str], int | None]) -> None:
    """Add the quota gauge to the default registry (once per process)."""
    REGISTRY.register(QuotaCollector(accounts, remaining))


def serve_metrics(port: int, *, address: str = "0.0.0.0") -> None:  # noqa: S104 (scraped by Prometheus)
    """Serve /metrics on `port` from a daemon thread (0 disables it)."""
    if port:
        start_http_server(port, addr=address)


RESULTS_NOT_STORED = Counter(
    "zns_results_not_stored_total",
    "Celery task results (or states) dropped because the result Redis was unreachable.",
    ["state"],
)
SENT_NOT_RECORDED = Counter(
    "zns_sent_not_recorded_total",
    "Sends Zalo accepted that could not be recorded (state Redis unreachable for ~15 s).",
    ["account"],
)
