"""Local matching: exact inner-product search over the active entries' unit embeddings.

faiss ``IndexFlatIP`` is exact; DESIGN.md measured approximate indexes missing 3-84% of true
matches on synthetic data, so exactness is the default until a recall check on real embeddings
justifies more. The index is built from storage and swapped in whole; between rebuilds it is
updated in place on every registration, correction and deletion. A deletion or an expiry, once
decided, suppresses its entry (``suppress``): it leaves the index at once and stays out of every
later load, rebuild and snapshot (the private-mode gallery's source) until the closure is written,
so an entry whose deletion could not be written yet (a full disk) never matches. One faiss thread per process
(two threads doubled single-query latency here), and a lowered BLAS threshold so that batched
queries really batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt

from protocol.embedding import Embedding
from protocol.errors import MalformedError

__all__ = ["Match", "MatchIndex"]

faiss.omp_set_num_threads(1)
BLAS_BATCH = 20
"""Batches of at least this many queries go through BLAS (faster in bulk); one query takes the direct path."""


@dataclass(frozen=True)
class Match:
    query_index: int
    key: str
    score: float
    version: int | None = None
    """The entry's version in the database when the fence checked it (``None``: not fenced)."""


class MatchIndex:
    """Active embeddings keyed by a string (the entry id); thread-safe."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        # faiss compares this threshold with queries x dimension, not with the number of queries
        faiss.cvar.distance_compute_blas_threshold = BLAS_BATCH * dimension
        self._lock = threading.Lock()
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
        self._ids: dict[str, int] = {}
        self._keys: dict[int, str] = {}
        self._next_id = 1
        self._suppressed: set[str] = set()
        self.guard: Callable[[], None] | None = None
        """Called before every search and vector read; it raises to refuse them (the registry sets
        its self-check's ``require_intact``: no answer from a store that disagrees with its log)."""
        self.fence: Callable[[list[Match]], list[Match]] | None = None
        """Called with every non-empty result of ``search``; returns the matches to report (the
        registry keeps those whose entry is active in the database at this moment, so an index
        that is behind another worker's deletion never reports it)."""

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, key: str) -> bool:
        return key in self._ids

    def _vector(self, embedding: Embedding) -> npt.NDArray[np.float32]:
        if embedding.dimension != self.dimension:
            raise MalformedError(f"embedding dimension {embedding.dimension}, index expects {self.dimension}")
        return np.ascontiguousarray(embedding.vector.reshape(1, -1), dtype=np.float32)

    @property
    def suppressed(self) -> frozenset[str]:
        """The keys kept out of the index whatever is loaded (closures decided, not yet written)."""
        with self._lock:
            return frozenset(self._suppressed)

    def suppress(self, key: str) -> None:
        """Stop matching ``key`` now and refuse it to every later ``upsert`` and ``replace_all``
        until ``readmit``: the closure of its entry is decided, its write may still fail."""
        with self._lock:
            self._suppressed.add(key)
            self._remove_locked(key)

    def readmit(self, key: str) -> None:
        """Lift ``suppress`` (the closure was written, or refused: the entry was not active)."""
        with self._lock:
            self._suppressed.discard(key)

    def upsert(self, key: str, embedding: Embedding) -> bool:
        """Add or replace ``key``; False (nothing added) while it is suppressed."""
        vector = self._vector(embedding)
        with self._lock:
            if key in self._suppressed:
                return False
            self._remove_locked(key)
            faiss_id = self._next_id
            self._next_id += 1
            self._index.add_with_ids(vector, np.array([faiss_id], dtype=np.int64))
            self._ids[key] = faiss_id
            self._keys[faiss_id] = key
            return True

    def remove(self, key: str) -> bool:
        with self._lock:
            return self._remove_locked(key)

    def _remove_locked(self, key: str) -> bool:
        faiss_id = self._ids.pop(key, None)
        if faiss_id is None:
            return False
        del self._keys[faiss_id]
        self._index.remove_ids(np.array([faiss_id], dtype=np.int64))  # type: ignore[arg-type]  # faiss wraps arrays
        return True

    def replace_all(self, items: Iterable[tuple[str, Embedding]]) -> None:
        """Build a fresh index from storage and swap it in."""
        fresh = MatchIndex(self.dimension)
        keys: list[str] = []
        vectors: list[npt.NDArray[np.float32]] = []
        for key, embedding in items:
            keys.append(key)
            vectors.append(fresh._vector(embedding))
        if keys:
            ids = np.arange(1, len(keys) + 1, dtype=np.int64)
            fresh._index.add_with_ids(np.vstack(vectors), ids)
            fresh._ids = {k: int(i) for k, i in zip(keys, ids, strict=True)}
            fresh._keys = {int(i): k for k, i in zip(keys, ids, strict=True)}
            fresh._next_id = len(keys) + 1
        with self._lock:
            for key in self._suppressed & fresh._ids.keys():
                fresh._remove_locked(key)
            self._index, self._ids, self._keys, self._next_id = (
                fresh._index,
                fresh._ids,
                fresh._keys,
                fresh._next_id,
            )

    def snapshot(self) -> tuple[list[str], npt.NDArray[np.float32]]:
        """Every active key and its vector, in one consistent read (for the private-mode gallery)."""
        with self._lock:
            count = self._index.ntotal
            if not count:
                return [], np.zeros((0, self.dimension), dtype=np.float32)
            vectors = self._index.index.reconstruct_n(0, count)
            ids = faiss.vector_to_array(self._index.id_map)
            return [self._keys[int(i)] for i in ids], np.asarray(vectors, dtype=np.float32)

    def vector(self, key: str) -> npt.NDArray[np.float32] | None:
        """The stored vector of ``key``, or ``None`` when it is not active."""
        if self.guard is not None:
            self.guard()
        with self._lock:
            faiss_id = self._ids.get(key)
            if faiss_id is None:
                return None
            return np.asarray(self._index.reconstruct(faiss_id), dtype=np.float32)

    def search(self, queries: list[Embedding], threshold: float, *, k: int = 8) -> list[Match]:
        """Every (query, entry) pair scoring at or above ``threshold``, best first per query."""
        if self.guard is not None:
            self.guard()
        if not queries:
            return []
        matrix = np.vstack([self._vector(q) for q in queries])
        with self._lock:
            if not self._ids:
                return []
            scores, ids = self._index.search(matrix, min(k, len(self._ids)))
            hits = [
                (qi, self._keys[int(faiss_id)], float(score))
                for qi in range(len(queries))
                for score, faiss_id in zip(scores[qi], ids[qi], strict=True)
                if faiss_id >= 0 and score >= threshold
            ]
        out = [Match(qi, key, score) for qi, key, score in hits]
        if out and self.fence is not None:
            return self.fence(out)
        return out
