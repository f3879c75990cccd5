"""Operations: the `zns` command line and what operators and worker processes run beside steps.

cli.py             `zns`: parse, call, print, exit code (developer commands via `zns_dev`)
actions.py         operator actions shared by the CLI and tests (replay, release, resume)
maintenance.py     periodic duties of every worker process (release parked, probe, refresh)
feeder.py          the lane feeder of every worker process (steps waiting for their account)
gauges.py          scrape-time gauges read from Redis (pauses, tokens, parked, queue, heartbeat)
journey_report.py  one customer's journey: tokens, steps, charged or timed out
health.py          the heartbeat file and `zns check`
flower.py          `zns flower` with basic auth and masked task arguments
malloc.py          glibc allocator settings for long-running worker processes

May import: anything in `worker`; `zns_dev` only on demand in developer commands; never `tasks`.
"""
