"""Optional encryption of tokens at rest in Redis (Fernet, from `cryptography`).

With `ZNS_TOKEN_ENCRYPTION_KEYS` set (comma-separated Fernet keys, newest first), every token
written to Redis is encrypted with the first key; any listed key decrypts, so keys rotate by
prepending a new one. Values written before encryption was turned on stay readable (no prefix).
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from worker.errors import ConfigError, ZnsError

PREFIX = "enc:v1:"


class TokenDecryptError(ZnsError):
    """A stored token cannot be decrypted with any configured key."""


class TokenCipher:
    """Encrypts and decrypts token strings; a no-op without keys."""

    def __init__(self, keys: SecretStr | None) -> None:
        self._fernet = _fernet(keys) if keys is not None else None

    @property
    def enabled(self) -> bool:
        """Whether tokens are encrypted at rest."""
        return self._fernet is not None

    def seal(self, plain: str) -> str:
        """The value to store for `plain`."""
        if self._fernet is None:
            return plain
        return PREFIX + self._fernet.encrypt(plain.encode()).decode()

    def open(self, stored: str) -> str:
        """The token behind a stored value (plain values pass through)."""
        if not stored.startswith(PREFIX):
            return stored
        if self._fernet is None:
            raise TokenDecryptError(
                "a token in Redis is encrypted but ZNS_TOKEN_ENCRYPTION_KEYS is not set"
            )
        try:
            return self._fernet.decrypt(stored.removeprefix(PREFIX).encode()).decode()
        except InvalidToken:
            raise TokenDecryptError(
                "a token in Redis does not decrypt with any key in ZNS_TOKEN_ENCRYPTION_KEYS"
            ) from None


def _fernet(keys: SecretStr) -> MultiFernet:
    parts = [part.strip() for part in keys.get_secret_value().split(",") if part.strip()]
    if not parts:
        raise ConfigError("ZNS_TOKEN_ENCRYPTION_KEYS is set but holds no key")
    try:
        return MultiFernet([Fernet(part) for part in parts])
    except ValueError:
        raise ConfigError(
            "ZNS_TOKEN_ENCRYPTION_KEYS: each key must be a urlsafe base64 32-byte Fernet key "
            "(make one with `zns token new-key`)"
        ) from None
