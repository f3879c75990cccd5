"""The Zalo API: client, error-code table and tolerant response models."""
