"""Face embeddings on the wire: L2-normalised little-endian float32, base64url.

Lists of floats in JSON are slow (~400 us a message) and do not canonicalise stably; raw
float32 bytes are exact and cheap. Every embedding is checked for dimension, finiteness and unit
norm on the way in, because cosine similarity by inner product is only meaningful on unit
vectors, and a non-normalised vector is either a bug or an attempt to inflate scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from protocol.canonical import b64url_decode, b64url_encode
from protocol.errors import MalformedError

__all__ = ["DEFAULT_DIMENSION", "NORM_TOLERANCE", "Embedding"]

DEFAULT_DIMENSION = 512
NORM_TOLERANCE = 1e-3
MAX_DIMENSION = 4096


@dataclass(frozen=True, eq=False)
class Embedding:
    """A unit-norm float32 vector; ``raw`` is its little-endian byte form."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) % 4 or not 0 < len(self.raw) // 4 <= MAX_DIMENSION:
            raise MalformedError(f"embedding: {len(self.raw)} bytes is not 1..{MAX_DIMENSION} float32 values")
        vector = self.vector
        if not np.all(np.isfinite(vector)):
            raise MalformedError("embedding: contains NaN or infinity")
        norm = float(np.linalg.norm(vector.astype(np.float64)))
        if abs(norm - 1.0) > NORM_TOLERANCE:
            raise MalformedError(f"embedding: L2 norm is {norm:.4f}, expected 1 +/- {NORM_TOLERANCE}")

    @property
    def dimension(self) -> int:
        return len(self.raw) // 4

    @property
    def vector(self) -> npt.NDArray[np.float32]:
        return np.frombuffer(self.raw, dtype="<f4")

    @classmethod
    def from_vector(cls, values: Any) -> Embedding:
        """Normalise any finite non-zero vector and freeze it as float32 bytes."""
        vector = np.asarray(values, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(vector)):
            raise MalformedError("embedding: contains NaN or infinity")
        scale = float(np.max(np.abs(vector))) if vector.size else 0.0
        if scale == 0.0:
            raise MalformedError("embedding: zero vector cannot be normalised")
        vector = vector / scale
        return cls((vector / float(np.linalg.norm(vector))).astype("<f4").tobytes())

    def similarity(self, other: Embedding) -> float:
        """Cosine similarity (inner product of unit vectors)."""
        if other.dimension != self.dimension:
            raise MalformedError(f"embedding: dimension {other.dimension} does not match {self.dimension}")
        return float(np.dot(self.vector.astype(np.float64), other.vector.astype(np.float64)))

    def to_str(self) -> str:
        return b64url_encode(self.raw)

    @classmethod
    def from_str(cls, text: Any, *, dimension: int | None = None, field: str = "embedding") -> Embedding:
        if isinstance(text, str) and len(text) > (MAX_DIMENSION * 4 * 4) // 3 + 4:
            raise MalformedError(f"{field}: longer than {MAX_DIMENSION} float32 values")
        raw = b64url_decode(text, field=field, length=None if dimension is None else dimension * 4)
        return cls(raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Embedding) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"Embedding(dimension={self.dimension})"
