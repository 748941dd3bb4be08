"""Peer queries in plain mode: "does any of these faces match an entry of yours?" and the answer.

A request carries up to ``MAX_QUERY_EMBEDDINGS`` unit embeddings and the model id they were made
with (a query from another model is meaningless and is refused by policy). The answer names only
entries at or above the group threshold, each as the owner's signed entry (metadata and a
salted commitment, never an embedding) with a coarse band, never the exact score, so the querier
can verify who registered what but cannot rebuild the template from scores.
Purpose and manifest version travel in the signed peer-message header, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

from protocol.embedding import Embedding
from protocol.entry import WatchlistEntry
from protocol.errors import MalformedError, OversizedError
from protocol.fields import ID_RE, NODE_ID_RE, Fields
from protocol.signed import SPEC_VERSION, Payload, SignedDocument

__all__ = ["MATCH_BANDS", "MAX_MATCHES", "MAX_QUERY_EMBEDDINGS", "QueryMatch", "QueryRequest", "QueryResponse"]

MAX_QUERY_EMBEDDINGS = 64
MAX_MATCHES = 256


@dataclass(kw_only=True)
class QueryRequest(Payload):
    TYPE = "query-request"

    query_id: str
    model_id: str
    embeddings: list[Embedding]
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= len(self.embeddings) <= MAX_QUERY_EMBEDDINGS:
            raise MalformedError(
                f"query-request.embeddings: {len(self.embeddings)} items, expected 1..{MAX_QUERY_EMBEDDINGS}"
            )
        dims = {e.dimension for e in self.embeddings}
        if len(dims) != 1:
            raise MalformedError(f"query-request.embeddings: mixed dimensions {sorted(dims)}")

    @property
    def dimension(self) -> int:
        return self.embeddings[0].dimension

    def check_dimension(self, expected: int) -> None:
        """Raise ``MalformedError`` unless the embeddings have the pinned model's dimension."""
        if self.dimension != expected:
            raise MalformedError(
                f"query-request.embeddings: dimension {self.dimension}, the model {self.model_id!r:.60} "
                f"makes {expected}"
            )

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "query_id": self.query_id,
                "model_id": self.model_id,
                "embeddings": [e.to_str() for e in self.embeddings],
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        query_id = f.text("query_id", max_len=64, pattern=ID_RE)
        model_id = f.text("model_id", max_len=128)
        raw = f.array("embeddings", max_items=MAX_QUERY_EMBEDDINGS)
        embeddings = [
            Embedding.from_str(e, field=f"query-request.embeddings[{i}]") for i, e in enumerate(raw)
        ]
        return cls(
            query_id=query_id,
            model_id=model_id,
            embeddings=embeddings,
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )


MATCH_BANDS = ("match", "strong")
"""How close, as an answer may say it: never the exact score (governance/disclosure.py says why)."""


@dataclass(frozen=True)
class QueryMatch:
    """Query embedding ``query_index`` matched the owner's signed ``entry``, in ``band``."""

    query_index: int
    band: str
    entry: SignedDocument[WatchlistEntry]

    def __post_init__(self) -> None:
        if not 0 <= self.query_index < MAX_QUERY_EMBEDDINGS:
            raise MalformedError(
                f"query match.query_index: {self.query_index} outside [0, {MAX_QUERY_EMBEDDINGS - 1}]"
            )
        if self.band not in MATCH_BANDS:
            raise MalformedError(f"query match.band: {self.band!r:.20}, expected one of {list(MATCH_BANDS)}")

    def to_dict(self) -> dict[str, Any]:
        return {"query_index": self.query_index, "band": self.band, "entry": self.entry.to_dict()}

    @classmethod
    def from_dict(cls, data: Any) -> QueryMatch:
        f = Fields(data, "query match")
        match = cls(
            query_index=f.integer("query_index", high=MAX_QUERY_EMBEDDINGS - 1),
            band=f.text("band", max_len=16),
            entry=SignedDocument.from_dict(f.obj("entry"), WatchlistEntry),
        )
        f.finish()  # nested: an unknown field is refused, never dropped from under the signature
        return match


@dataclass(kw_only=True)
class QueryResponse(Payload):
    TYPE = "query-response"

    query_id: str
    responder: str
    threshold: float
    matches: list[QueryMatch]
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise MalformedError(f"query-response.threshold: {self.threshold} outside [-1, 1]")
        if len(self.matches) > MAX_MATCHES:
            raise OversizedError(f"query-response.matches: {len(self.matches)} items, limit {MAX_MATCHES}")
        seen: set[tuple[int, str]] = set()
        for i, match in enumerate(self.matches):
            key = (match.query_index, match.entry.payload.entry_id)
            if key in seen:
                raise MalformedError(
                    f"query-response.matches[{i}]: entry {key[1]} named twice for query_index {key[0]}"
                )
            seen.add(key)
            if match.entry.payload.owner != self.responder:
                raise MalformedError(
                    f"query-response.matches[{i}]: entry owned by {match.entry.payload.owner!r}, "
                    f"not by the responder {self.responder!r}"
                )

    def check_against(self, request: QueryRequest) -> None:
        """The answer belongs to ``request``: same query id, indexes it asked about, entries of its model."""
        if self.query_id != request.query_id:
            raise MalformedError(
                f"query-response.query_id {self.query_id!r} answers no request of ours "
                f"(expected {request.query_id!r})"
            )
        for i, match in enumerate(self.matches):
            if match.query_index >= len(request.embeddings):
                raise MalformedError(
                    f"query-response.matches[{i}].query_index {match.query_index} but the request had "
                    f"{len(request.embeddings)} embeddings"
                )
            if match.entry.payload.model_id != request.model_id:
                raise MalformedError(
                    f"query-response.matches[{i}]: entry made with model {match.entry.payload.model_id!r:.60}, "
                    f"the query used {request.model_id!r:.60}"
                )

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "query_id": self.query_id,
                "responder": self.responder,
                "threshold": self.threshold,
                "matches": [m.to_dict() for m in self.matches],
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            query_id=f.text("query_id", max_len=64, pattern=ID_RE),
            responder=f.text("responder", max_len=63, pattern=NODE_ID_RE),
            threshold=f.number("threshold", low=-1.0, high=1.0),
            matches=[QueryMatch.from_dict(m) for m in f.array("matches", max_items=MAX_MATCHES)],
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )
