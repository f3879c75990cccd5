"""Celery task definitions: thin adapters over `worker` (which never imports them).

app.py       the worker process's Celery app and runtime, built once
step.py      `zns.send_journey_step`: validate, run the pipeline, map the outcome to Celery
batch.py     `zns.send_journey_steps`: several steps in one message
lifecycle.py worker-process hooks: maintenance thread, heartbeat, metrics server
consumer.py  a consumer that dead-letters what Celery would drop
envelope.py  the task message's envelope checked before Celery trusts it
request.py   masked arguments for events, Flower and `celery inspect`
"""
