"""One journey step through every gate to Zalo and back; knows nothing of Celery.

sender.py     JourneySender: order, begin, tokens, send, record
outcomes.py   what a step came to: Sent, Duplicate, AlreadyDead, Retry, Queued, Park, DeadLetter
policy.py     ErrorPolicy: a Zalo error's action becomes an outcome
retry.py      RetryPolicy: backoff with jitter, retry budgets
step_meta.py  the worker's own bookkeeping that travels with a step, sealed against producers
answer_times.py  how long Zalo takes to answer each account (slow accounts meet their cap)

May import: `worker.tokens`, `worker.state`, `worker.zalo` and the vocabulary modules.
"""
