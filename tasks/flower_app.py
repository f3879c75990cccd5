"""The Celery app Flower watches (`zns flower`, `celery -A tasks.flower_app flower`).

Ours, on kombu's own broker transport. Flower reads queue lengths (its Broker page,
`/api/queues/length`) with a client it picks by the broker URL's scheme, and our workers'
transport (worker/messaging/broker.py, selected by `broker_transport`) would make that URL's
scheme a class path Flower does not know. That transport changes only how a worker consumes
tasks; Flower consumes events only, so kombu's plain transport for the URL is the right one here.
"""

from __future__ import annotations

from tasks.app import app

app.conf.broker_transport = None

__all__ = ["app"]
