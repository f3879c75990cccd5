"""Optional encryption of tokens at rest."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from worker.errors import ConfigError
from worker.tokens.crypto import PREFIX, TokenCipher, TokenDecryptError


def keys(*values: bytes) -> SecretStr:
    return SecretStr(",".join(v.decode() for v in values))


def test_without_keys_tokens_pass_through() -> None:
    cipher = TokenCipher(None)
    assert not cipher.enabled
    assert cipher.seal("tok") == "tok" and cipher.open("tok") == "tok"


def test_sealed_tokens_do_not_show_and_open_again() -> None:
    cipher = TokenCipher(keys(Fernet.generate_key()))
    sealed = cipher.seal("secret-token")
    assert sealed.startswith(PREFIX) and "secret-token" not in sealed
    assert cipher.open(sealed) == "secret-token"


def test_plain_values_from_before_encryption_stay_readable() -> None:
    assert TokenCipher(keys(Fernet.generate_key())).open("written-before") == "written-before"


def test_keys_rotate_by_prepending() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    sealed_with_old = TokenCipher(keys(old)).seal("t")
    rotated = TokenCipher(keys(new, old))
    assert rotated.open(sealed_with_old) == "t"
    assert TokenCipher(keys(new)).open(rotated.seal("t")) == "t"


def test_wrong_or_missing_key_is_a_clear_error() -> None:
    sealed = TokenCipher(keys(Fernet.generate_key())).seal("t")
    with pytest.raises(TokenDecryptError, match="does not decrypt"):
        TokenCipher(keys(Fernet.generate_key())).open(sealed)
    with pytest.raises(TokenDecryptError, match="ZNS_TOKEN_ENCRYPTION_KEYS is not set"):
        TokenCipher(None).open(sealed)


@pytest.mark.parametrize("bad", ["", " , ", "not-a-fernet-key"])
def test_bad_keys_fail_at_start_naming_the_variable(bad: str) -> None:
    with pytest.raises(ConfigError, match="ZNS_TOKEN_ENCRYPTION_KEYS"):
        TokenCipher(SecretStr(bad))
