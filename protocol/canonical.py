"""Canonical bytes (RFC 8785 JCS), strict JSON parsing and base64url.

RFC 8785 is the only input to signatures and hashes: two implementations that agree on the
object agree on the bytes. ``json.dumps`` output is never signed. Parsing is strict on purpose:
duplicate keys, NaN/Infinity, lone surrogates and oversized documents are refused, because a
lenient parser is where two peers start to disagree about what was signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

import rfc8785

from protocol.errors import MalformedError, OversizedError

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "b64url_decode",
    "b64url_encode",
    "canonical_bytes",
    "parse_json",
    "sha256_hex",
]

MAX_DOCUMENT_BYTES = 1 << 20
"""Hard limit on one JSON document (1 MiB): larger bodies are refused before parsing."""

_MAX_DEPTH = 32


def canonical_bytes(obj: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of a JSON-compatible object."""
    try:
        return rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError as e:
        raise MalformedError(f"cannot canonicalise: {e}") from e
    except (TypeError, ValueError) as e:
        raise MalformedError(f"not JSON-compatible: {e}") from e


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256, the form of every digest id in watchnet."""
    return hashlib.sha256(data).hexdigest()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedError(f"duplicate key {key!r} in JSON object")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise MalformedError(f"JSON constant {name} is not allowed")


def _check(obj: Any, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise MalformedError(f"JSON nested deeper than {_MAX_DEPTH} levels")
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError as e:
            raise MalformedError("JSON string holds a lone surrogate") from e
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _check(key, depth + 1)
            _check(value, depth + 1)
    elif isinstance(obj, list):
        for value in obj:
            _check(value, depth + 1)


def parse_json(data: bytes | str, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    """Parse one JSON document strictly; raise ``MalformedError``/``OversizedError``."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise OversizedError(f"document is {len(raw)} bytes, limit is {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedError(f"document is not UTF-8 (byte {e.start})") from e
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise MalformedError(f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}") from e
    except RecursionError as e:
        raise MalformedError("JSON nested too deeply") from e
    _check(obj, 0)
    return obj


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 4648 section 5), the form of every binary field."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, *, field: str = "value", length: int | None = None) -> bytes:
    """Decode base64url without padding; refuse padding, other alphabets and wrong lengths."""
    if not isinstance(text, str):
        raise MalformedError(f"{field}: expected base64url string, got {type(text).__name__}")
    if "=" in text or "+" in text or "/" in text or len(text) % 4 == 1:
        raise MalformedError(f"{field}: not unpadded base64url")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as e:
        raise MalformedError(f"{field}: not unpadded base64url") from e
    if b64url_encode(data) != text:
        raise MalformedError(f"{field}: non-canonical base64url")
    if length is not None and len(data) != length:
        raise MalformedError(f"{field}: expected {length} bytes, got {len(data)}")
    return data
