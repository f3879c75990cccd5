"""The Zalo API: the only code that speaks HTTP to Zalo.

client.py          ZaloClient: typed calls through one funnel; tokens only in headers
codes.py           Zalo's error codes -> class and action (error-codes.csv, one line each)
models.py          response models tolerant of Zalo's quirks
thread_clients.py  one ZaloClient per thread

May import: the vocabulary modules of `worker` (errors, settings).
"""
