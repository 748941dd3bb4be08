"""The group's CKKS parameters and evaluation-key names: what the manifest states, checked
without loading SEAL, so reading a manifest (or building the CLI) never imports tenseal.

The coefficient-modulus limits are those of the Homomorphic Encryption Standard for a ternary
secret, as Microsoft SEAL hard-codes them (``CoeffModulus.MaxBitCount``); a test checks this
table against SEAL's own, and SEAL still refuses a context below the stated security level.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from protocol.errors import ConfigurationError, MalformedError
from protocol.fields import Fields

__all__ = [
    "HEADROOM_BITS",
    "MAX_CIPHERTEXT_BYTES",
    "MAX_COEFF_MODULUS_BITS",
    "MAX_KEY_BYTES",
    "HEParameters",
    "key_id_of",
]

MAX_COEFF_MODULUS_BITS: dict[int, dict[int, int]] = {
    128: {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881},
    192: {1024: 19, 2048: 37, 4096: 75, 8192: 152, 16384: 305, 32768: 611},
    256: {1024: 14, 2048: 29, 4096: 58, 8192: 118, 16384: 237, 32768: 476},
}
"""Security level -> ring dimension -> the largest total coefficient modulus, in bits."""

HEADROOM_BITS = 9
"""Bits above the final scale for ``|r * 2 (s - t)| <= 64 * 2 * 1.5 + noise < 2^8`` and the sign; one
more with the norm check, for ``|r * 4 (s^2 - t^2 |q|^2)| <= 64 * 4 * 1.25 + noise < 2^9``."""

MAX_CIPHERTEXT_BYTES = 1 << 20
MAX_KEY_BYTES = 8 << 20


def key_id_of(galois_keys: bytes, relin_keys: bytes = b"") -> str:
    """Evaluation keys are named by the SHA-256 over the SHA-256 of each serialised key set."""
    return hashlib.sha256(
        hashlib.sha256(galois_keys).digest() + hashlib.sha256(relin_keys).digest()
    ).hexdigest()


@dataclass(frozen=True)
class HEParameters:
    """The group's CKKS parameters, as the manifest states them."""

    ring_dimension: int = 8192
    coeff_modulus_bits: tuple[int, ...] = (60, 60)
    query_scale_bits: int = 28
    entry_scale_bits: int = 16
    mask_scale_bits: int = 7
    noise: float = 0.01
    security_bits: int = 128
    norm_check: bool = False
    """Answer the sign of ``s^2 - t^2 |q|^2`` instead of ``s - t``: scaling a query gains nothing.
    Needs relinearisation keys and room for ``(query * entry)^2`` in the data modulus."""

    def __post_init__(self) -> None:
        n = self.ring_dimension
        if n not in (4096, 8192, 16384, 32768):
            raise ConfigurationError(f"he.ring_dimension {n}: expected 4096, 8192, 16384 or 32768")
        if self.security_bits not in MAX_COEFF_MODULUS_BITS:
            raise ConfigurationError(f"he.security_bits {self.security_bits}: expected 128, 192 or 256")
        bits = self.coeff_modulus_bits
        if len(bits) < 2 or any(not 20 <= b <= 60 for b in bits):
            raise ConfigurationError(
                f"he.coeff_modulus_bits {list(bits)}: need a data prime and a special prime, each 20..60 bits"
            )
        limit = MAX_COEFF_MODULUS_BITS[self.security_bits][n]
        if sum(bits) > limit:
            raise ConfigurationError(
                f"he.coeff_modulus_bits total {sum(bits)} bits exceeds {limit}, the most ring dimension {n} "
                f"allows at {self.security_bits}-bit security"
            )
        if bits[-1] < max(bits[:-1]):
            raise ConfigurationError("he.coeff_modulus_bits: the special (last) prime must be the largest")
        product = self.query_scale_bits + self.entry_scale_bits
        used = (2 * product + 1 if self.norm_check else product) + self.mask_scale_bits + HEADROOM_BITS
        if used > sum(bits[:-1]):
            raise ConfigurationError(
                f"he scales: {used} bits of scale and headroom do not fit the {sum(bits[:-1])}-bit data modulus"
            )
        if not 20 <= self.query_scale_bits <= 40 or not 10 <= self.entry_scale_bits <= 30:
            raise ConfigurationError("he scales: query 20..40 bits, entries 10..30 bits")
        if not 6 <= self.mask_scale_bits <= 20:
            raise ConfigurationError("he.mask_scale_bits: expected 6..20")
        if not (math.isfinite(self.noise) and 0.0 < self.noise <= 0.1):
            raise ConfigurationError(f"he.noise {self.noise}: expected 0 < noise <= 0.1")

    @property
    def slots(self) -> int:
        return self.ring_dimension // 2

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": "ckks",
            "ring_dimension": self.ring_dimension,
            "coeff_modulus_bits": list(self.coeff_modulus_bits),
            "query_scale_bits": self.query_scale_bits,
            "entry_scale_bits": self.entry_scale_bits,
            "mask_scale_bits": self.mask_scale_bits,
            "noise": self.noise,
            "security_bits": self.security_bits,
            "norm_check": self.norm_check,
        }

    @classmethod
    def from_dict(cls, data: Any, what: str = "he") -> HEParameters:
        f = Fields(data, what)
        f.const("scheme", "ckks")
        bits = f.array("coeff_modulus_bits", max_items=16)
        if not all(isinstance(b, int) and not isinstance(b, bool) for b in bits):
            raise MalformedError(f"{what}.coeff_modulus_bits: expected integers")
        try:
            params = cls(
                ring_dimension=f.integer("ring_dimension", low=1024, high=65536),
                coeff_modulus_bits=tuple(bits),
                query_scale_bits=f.integer("query_scale_bits", high=60),
                entry_scale_bits=f.integer("entry_scale_bits", high=60),
                mask_scale_bits=f.integer("mask_scale_bits", high=60),
                noise=f.number("noise", low=0.0, high=1.0),
                security_bits=f.integer("security_bits", high=512),
                norm_check=f.optional("norm_check", False, f.boolean),
            )
        except ConfigurationError as e:
            raise MalformedError(f"{what}: {e}") from e
        if f.rest():
            raise MalformedError(f"{what}: unexpected fields {sorted(f.rest())}")
        return params

    def fingerprint(self) -> str:
        """Short name for "these exact parameters", carried beside keys and queries."""
        text = ",".join(f"{k}={v}" for k, v in sorted(self.to_dict().items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]
