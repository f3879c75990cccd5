"""Tokens: the OA's access and refresh token pair, and journey tokens.

access.py   AccessTokenManager: the pair in Redis, single-flight refresh, doubt, pause on death
journey.py  JourneyTokenStore: one journey token per (account, phone, journey, type), made once
crypto.py   TokenCipher: tokens encrypted at rest (Fernet), keys rotated newest first

May import: `worker.state`, `worker.zalo.models` and the vocabulary modules of `worker`.
"""
