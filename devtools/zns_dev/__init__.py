"""Developer tools of zns-journey-worker, kept out of the wheel and the image.

sandbox/     the local stand-in for Zalo's API and OAuth host (`zns sandbox`)
demo.py      sandbox + a worker + a sample journey set, with progress and a summary (`zns demo`)
bench.py     raw vs naive vs ours against the sandbox (`zns bench`)
naive.py     the naive Celery sender the bench measures against
localrun.py  real local processes for tests, demo and bench: redis-server, workers
commands.py  the typer app `zns` hands these commands to

May import: `worker` and `tasks`; nothing in `worker` or `tasks` imports this package.
"""
