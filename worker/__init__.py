"""zns-journey-worker: send Zalo ZNS Journey messages from Celery, exactly once."""
