"""Private-mode peer messages: evaluation keys, the encrypted round and the reveal round.

Round 1 (``PrivateQuery`` -> ``PrivateScores``): CKKS ciphertexts of the querier's embeddings go
out; masked encrypted scores come back, one value per slot position of the peer's shuffled
gallery, with no entry ids. Round 2 (``RevealRequest`` -> ``QueryResponse``): only for a position
whose decrypted value says "match", the querier sends that face in the clear (sealed) and the
peer checks the score itself before it returns the signed entry, so it learns of a face only
when the face matches one of its registered entries, and a member cannot harvest entries by
asking for positions. ``EvaluationKeys`` carry the querier's Galois keys once per key epoch;
queries then name them by ``key_id``. All travel inside signed, sealed peer messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from protocol.canonical import b64url_encode
from protocol.embedding import Embedding
from protocol.errors import MalformedError
from protocol.fields import ID_RE, NODE_ID_RE, Fields, check_wire_time, format_time
from protocol.he_params import MAX_CIPHERTEXT_BYTES, MAX_KEY_BYTES, HEParameters, key_id_of
from protocol.query import MAX_QUERY_EMBEDDINGS
from protocol.signed import SPEC_VERSION, Payload

__all__ = [
    "MAX_PRIVATE_QUERIES",
    "MAX_REVEAL_CANDIDATES",
    "Candidate",
    "EvaluationKeys",
    "EvaluationKeysAck",
    "PrivateQuery",
    "PrivateScores",
    "RevealRequest",
]

MAX_PRIVATE_QUERIES = 16
MAX_REVEAL_CANDIDATES = 16
MAX_RESULT_CIPHERTEXTS = 32
"""4096 slots each at ring dimension 8192: room for 131k entries."""

_KEY_ID_RE = ID_RE


@dataclass(kw_only=True)
class EvaluationKeys(Payload):
    """The querier's Galois keys for one epoch; public material, bound to its owner and parameters."""

    TYPE = "he-evaluation-keys"

    owner: str
    key_id: str
    params: HEParameters
    not_after: datetime
    galois_keys: bytes
    relin_keys: bytes = b""
    """Relinearisation keys, present exactly when the group's parameters run the norm check."""
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_wire_time(self.not_after, "he-evaluation-keys.not_after")
        if self.key_id != key_id_of(self.galois_keys, self.relin_keys):
            raise MalformedError("he-evaluation-keys.key_id does not name the keys it carries")
        if bool(self.relin_keys) != self.params.norm_check:
            raise MalformedError("he-evaluation-keys.relin_keys: required with the norm check, and only then")

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "owner": self.owner,
                "key_id": self.key_id,
                "params": self.params.to_dict(),
                "not_after": format_time(self.not_after),
                "galois_keys": b64url_encode(self.galois_keys),
                "relin_keys": b64url_encode(self.relin_keys),
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            owner=f.text("owner", max_len=63, pattern=NODE_ID_RE),
            key_id=f.text("key_id", max_len=64, pattern=_KEY_ID_RE),
            params=HEParameters.from_dict(f.obj("params"), f"{cls.TYPE}.params"),
            not_after=f.time("not_after"),
            galois_keys=f.binary("galois_keys", max_len=MAX_KEY_BYTES),
            relin_keys=f.binary("relin_keys", max_len=MAX_KEY_BYTES),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )


@dataclass(kw_only=True)
class EvaluationKeysAck(Payload):
    """The peer holds ``key_id`` until ``not_after`` and will accept queries naming it."""

    TYPE = "he-evaluation-keys-ack"

    key_id: str
    not_after: datetime
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {**self._header(), "key_id": self.key_id, "not_after": format_time(self.not_after)}
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            key_id=f.text("key_id", max_len=64, pattern=_KEY_ID_RE),
            not_after=f.time("not_after"),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )


@dataclass(kw_only=True)
class PrivateQuery(Payload):
    """Round 1: one CKKS ciphertext per face, under the evaluation keys ``key_id``."""

    TYPE = "private-query-request"

    query_id: str
    model_id: str
    key_id: str
    ciphertexts: list[bytes]
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= len(self.ciphertexts) <= MAX_PRIVATE_QUERIES:
            raise MalformedError(
                f"private-query-request.ciphertexts: {len(self.ciphertexts)} items, expected 1..{MAX_PRIVATE_QUERIES}"
            )

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "query_id": self.query_id,
                "model_id": self.model_id,
                "key_id": self.key_id,
                "ciphertexts": [b64url_encode(c) for c in self.ciphertexts],
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        raw = f.array("ciphertexts", max_items=MAX_PRIVATE_QUERIES)
        return cls(
            query_id=f.text("query_id", max_len=64, pattern=ID_RE),
            model_id=f.text("model_id", max_len=128),
            key_id=f.text("key_id", max_len=64, pattern=_KEY_ID_RE),
            ciphertexts=[
                Fields({"c": c}, f"{cls.TYPE}.ciphertexts[{i}]").binary("c", max_len=MAX_CIPHERTEXT_BYTES)
                for i, c in enumerate(raw)
            ],
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )


@dataclass(kw_only=True)
class PrivateScores(Payload):
    """Round 1's answer: per query, the masked encrypted scores of every slot position of ``build_id``."""

    TYPE = "private-query-response"

    query_id: str
    responder: str
    build_id: str
    results: list[list[bytes]]
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.results) > MAX_PRIVATE_QUERIES:
            raise MalformedError(f"private-query-response.results: {len(self.results)} items")
        if any(len(r) > MAX_RESULT_CIPHERTEXTS for r in self.results):
            raise MalformedError(
                f"private-query-response.results: more than {MAX_RESULT_CIPHERTEXTS} ciphertexts"
            )

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "query_id": self.query_id,
                "responder": self.responder,
                "build_id": self.build_id,
                "results": [[b64url_encode(c) for c in r] for r in self.results],
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        results = []
        for i, item in enumerate(f.array("results", max_items=MAX_PRIVATE_QUERIES)):
            inner = Fields({"r": item}, f"{cls.TYPE}.results[{i}]")
            results.append(
                [
                    Fields({"c": c}, f"{cls.TYPE}.results[{i}][{j}]").binary(
                        "c", max_len=MAX_CIPHERTEXT_BYTES
                    )
                    for j, c in enumerate(inner.array("r", max_items=MAX_RESULT_CIPHERTEXTS))
                ]
            )
        return cls(
            query_id=f.text("query_id", max_len=64, pattern=ID_RE),
            responder=f.text("responder", max_len=63, pattern=NODE_ID_RE),
            build_id=f.text("build_id", max_len=64, pattern=ID_RE),
            results=results,
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )


@dataclass(frozen=True)
class Candidate:
    """Query ``query_index`` decrypted to a match at slot ``position``; ``embedding`` is that face."""

    query_index: int
    position: int
    embedding: Embedding

    def to_dict(self) -> dict[str, Any]:
        return {
            "query_index": self.query_index,
            "position": self.position,
            "embedding": self.embedding.to_str(),
        }

    @classmethod
    def from_dict(cls, data: Any, what: str) -> Candidate:
        f = Fields(data, what)
        candidate = cls(
            query_index=f.integer("query_index", high=MAX_QUERY_EMBEDDINGS - 1),
            position=f.integer("position", high=MAX_RESULT_CIPHERTEXTS * 32768),
            embedding=Embedding.from_str(f.text("embedding", max_len=1 << 16), field=f"{what}.embedding"),
        )
        if f.rest():
            raise MalformedError(f"{what}: unexpected fields {sorted(f.rest())}")
        return candidate


@dataclass(kw_only=True)
class RevealRequest(Payload):
    """Round 2: "these positions matched"; answered with the signed entries as a ``query-response``."""

    TYPE = "private-reveal-request"

    query_id: str
    build_id: str
    model_id: str
    candidates: list[Candidate]
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= len(self.candidates) <= MAX_REVEAL_CANDIDATES:
            raise MalformedError(
                f"private-reveal-request.candidates: {len(self.candidates)} items, expected 1..{MAX_REVEAL_CANDIDATES}"
            )

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "query_id": self.query_id,
                "build_id": self.build_id,
                "model_id": self.model_id,
                "candidates": [c.to_dict() for c in self.candidates],
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            query_id=f.text("query_id", max_len=64, pattern=ID_RE),
            build_id=f.text("build_id", max_len=64, pattern=ID_RE),
            model_id=f.text("model_id", max_len=128),
            candidates=[
                Candidate.from_dict(c, f"{cls.TYPE}.candidates[{i}]")
                for i, c in enumerate(f.array("candidates", max_items=MAX_REVEAL_CANDIDATES))
            ],
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )
