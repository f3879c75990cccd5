"""zns-journey-worker: send Zalo ZNS Journey messages from Celery, exactly once.

The production package: what runs in a pod (worker, webhook receiver, producer API, operator
CLI). Layers, lowest first; a module imports only from its own layer or below, never `tasks/`:

  errors clock metrics phone settings logs job status   the vocabulary: import nothing above
  zalo/        the Zalo API client (the only httpx user)
  state/       the state Redis: key shapes, Lua scripts, one store per concern
  tokens/      OA access tokens and journey tokens
  messaging/   Celery plumbing: task names, app, broker transport, result backend, bulk publish
  pipeline/    one journey step through every gate to Zalo; knows no Celery
  runtime.py   the composition root: real collaborators built once per process
  producer.py  what billing apps import: validate, record, enqueue
  webhooks/    `zns webhooks`: Zalo's events received
  ops/         the `zns` command line, operator actions, maintenance passes, health, Flower

Developer tools (sandbox Zalo, demo, bench, local process runner) live in `devtools/zns_dev`,
a separate distribution that is not in the wheel or the image.
"""
