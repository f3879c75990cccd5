"""Zalo's webhook events, received (`zns webhooks`).

signature.py  X-ZEvent-Signature: mac = sha256(app_id + raw body + timestamp + OA secret key)
events.py     the envelope and the five events we act on, parsed tolerantly; stable event ids
directory.py  which configured account an event's app_id (and OA id) belongs to, and its key
seen.py       SeenEvents: dedupe of redeliveries (SET NX with a TTL)
receiver.py   WebhookReceiver: verify, dedupe, record; answers as an (HTTP status, outcome)
app.py        the Starlette app: body limit, then the receiver in a worker thread
server.py     serve() for `zns webhooks`, running_receiver() in a thread (tests, demo)

May import: `worker.runtime`, `worker.state` and the vocabulary modules. Starlette and uvicorn
are used only here.
"""
