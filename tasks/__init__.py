"""Celery task definitions (thin adapters over `worker`)."""
