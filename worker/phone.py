"""Vietnamese mobile numbers: normalise to Zalo's `84xxxxxxxxx` form, validate, mask for logs."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

from worker.errors import InvalidPhone

REGION = "VN"
COUNTRY_CODE = 84
#: Number types Zalo can deliver to: mobiles (and numbers the metadata cannot tell apart).
MOBILE_TYPES = frozenset(
    {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}
)
CACHE_SIZE = 100_000  # ~10 MB at most; a run's distinct customers
_MASK_KEEP_HEAD = 4
_MASK_KEEP_TAIL = 3


def mask_phone(value: str) -> str:
    """`84987654321` -> `8498****321`: enough to correlate, not enough to call."""
    text = str(value)
    if len(text) <= _MASK_KEEP_HEAD + _MASK_KEEP_TAIL:
        return "*" * len(text)
    hidden = len(text) - _MASK_KEEP_HEAD - _MASK_KEEP_TAIL
    return f"{text[:_MASK_KEEP_HEAD]}{'*' * hidden}{text[-_MASK_KEEP_TAIL:]}"


def normalize_phone(raw: object) -> str:
    """Return `84` + national digits for a valid Vietnamese mobile, else raise InvalidPhone."""
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise InvalidPhone(f"phone must be a string, got {type(raw).__name__}")
    return _normalize(str(raw).strip())


@lru_cache(maxsize=CACHE_SIZE)
def _normalize(text: str) -> str:
    """Cached: a billing run sends several steps to each customer (errors are not cached)."""
    try:
        parsed = phonenumbers.parse(_with_plus_if_international(text), REGION)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"phone {mask_phone(text)!r} is not a phone number") from exc
    if parsed.country_code != COUNTRY_CODE:
        raise InvalidPhone(f"phone {mask_phone(text)!r} is not a valid Vietnamese number")
    kind = phonenumbers.number_type(parsed)  # UNKNOWN for an invalid number
    if kind == phonenumbers.PhoneNumberType.UNKNOWN:
        raise InvalidPhone(f"phone {mask_phone(text)!r} is not a valid Vietnamese number")
    if kind not in MOBILE_TYPES:
        raise InvalidPhone(f"phone {mask_phone(text)!r} is not a Vietnamese mobile number")
    return f"{COUNTRY_CODE}{parsed.national_number}"


def _with_plus_if_international(text: str) -> str:
    """`84987654321` (no plus, no leading 0) is already international: parse it as such."""
    digits = "".join(ch for ch in text if ch.isdigit())
    if text[:1].isdigit() and digits.startswith(str(COUNTRY_CODE)) and len(digits) == 11:  # noqa: PLR2004
        return f"+{digits}"
    return text
