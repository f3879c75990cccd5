"""Celery plumbing: what travels on the broker and how it is read and written.

names.py           the task names and the queue (the public contract; no Celery import)
celery_app.py      the Celery app, each setting with its reason
broker.py          the Redis broker transport: batch pop, safe reading, restart-hardened
broker_message.py  one raw list item made into an envelope kombu can handle, or wrapped
result_backend.py  results written in one round trip, never blocking a step
bulk.py            several steps in one broker message (`zns.send_journey_steps`)

May import: `worker.state` (scripts, connection) and the vocabulary modules of `worker`.
Celery and kombu are used only here and in `tasks/`.
"""
