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
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from protocol.embedding import Embedding
from protocol.errors import MalformedError

__all__ = ["Match", "MatchIndex"]

faiss.omp_set_num_threads(1)
BLAS_BATCH = 20
"""Batches of at least this many queries go through BLAS (faster in bulk); one query takes the direct path."""
BATCH_ROWS = 256
"""The most queries searched together: a batch's search stays a few milliseconds at 100k entries."""


@dataclass
class _Waiting:
    """One caller's search, queued: its rows, its cut, and (once searched) its answer."""

    matrix: npt.NDArray[np.float32]
    threshold: float
    k: int
    done: bool = False
    lead: bool = False
    result: list[Match] = field(default_factory=list)
    error: BaseException | None = None


class _Batches:
    """Searches combined while one runs: the first caller searches for everyone queued behind it,
    then hands the turn to the next caller still waiting, so no caller serves others for long."""

    def __init__(
        self, search_rows: Callable[[npt.NDArray[np.float32], int], tuple[Any, list[list[str | None]]]]
    ) -> None:
        self._search_rows = search_rows
        self._cond = threading.Condition()
        self._queue: list[_Waiting] = []
        self._running = False

    def search(self, matrix: npt.NDArray[np.float32], threshold: float, k: int) -> list[Match]:
        mine = _Waiting(matrix, threshold, k)
        with self._cond:
            self._queue.append(mine)
            if self._running:
                while not (mine.done or mine.lead):
                    self._cond.wait()
            else:
                self._running = True
        if not mine.done:
            self._run()
        if mine.error is not None:
            raise mine.error
        return mine.result

    def _run(self) -> None:
        with self._cond:
            batch: list[_Waiting] = []
            rows = 0
            while self._queue and (not batch or rows + len(self._queue[0].matrix) <= BATCH_ROWS):
                waiting = self._queue.pop(0)
                batch.append(waiting)
                rows += len(waiting.matrix)
        try:
            scores, keys = self._search_rows(np.vstack([w.matrix for w in batch]), max(w.k for w in batch))
            row = 0
            for w in batch:
                for qi in range(len(w.matrix)):
                    found = zip(scores[row + qi][: w.k], keys[row + qi][: w.k], strict=True)
                    w.result += [
                        Match(qi, key, float(score))
                        for score, key in found
                        if key is not None and score >= w.threshold
                    ]
                row += len(w.matrix)
        except BaseException as e:  # noqa: BLE001 (each caller raises it in its own thread)
            for w in batch:
                w.error = e
        with self._cond:
            for w in batch:
                w.done = True
            if self._queue:
                self._queue[0].lead = True
            else:
                self._running = False
            self._cond.notify_all()


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
        self._batches = _Batches(self._search_rows)
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
        """Every (query, entry) pair scoring at or above ``threshold``, best first per query.

        Searches that arrive while another runs wait and go together in the next one (``_Batch``):
        faiss's flat search through BLAS answers a batch of queries for little more than one, and
        the index lock serialises searches anyway. A lone search runs at once (no window is waited
        for); under load a batch is whatever queued during the search before it, at most
        ``BATCH_ROWS`` queries. Each caller gets exactly its own rows, cut at its own threshold and
        ``k``, then fenced as before."""
        if self.guard is not None:
            self.guard()
        if not queries:
            return []
        matrix = np.vstack([self._vector(q) for q in queries])
        out = self._batches.search(matrix, threshold, k)
        if out and self.fence is not None:
            return self.fence(out)
        return out

    def _search_rows(
        self, matrix: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.float32], list[list[str | None]]]:
        """The top ``k`` scores and keys of every row of ``matrix`` (``None`` where fewer exist)."""
        with self._lock:
            if not self._ids:
                return np.zeros((len(matrix), 0), dtype=np.float32), [[] for _ in range(len(matrix))]
            scores, ids = self._index.search(matrix, min(k, len(self._ids)))
            keys = [[self._keys[int(i)] if i >= 0 else None for i in row] for row in ids]
        return scores, keys
