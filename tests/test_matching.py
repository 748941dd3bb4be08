"""Local matching with the real faiss index: exactness, thresholds, updates, swaps."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from node.records.matching import Match, MatchIndex
from protocol.embedding import Embedding
from protocol.errors import MalformedError


def random_embeddings(n: int, seed: int, dim: int = 64) -> list[Embedding]:
    rng = np.random.default_rng(seed)
    return [Embedding.from_vector(v) for v in rng.standard_normal((n, dim))]


def test_finds_exact_entry_and_respects_threshold() -> None:
    gallery = random_embeddings(200, seed=1)
    index = MatchIndex(64)
    index.replace_all((f"e{i}", e) for i, e in enumerate(gallery))
    matches = index.search([gallery[17], gallery[42]], threshold=0.99)
    assert [(m.query_index, m.key) for m in matches] == [(0, "e17"), (1, "e42")]
    assert all(abs(m.score - 1.0) < 1e-5 for m in matches)
    assert index.search(random_embeddings(5, seed=2), threshold=0.9) == []


def test_scores_equal_numpy_inner_products() -> None:
    gallery = random_embeddings(50, seed=3)
    query = random_embeddings(1, seed=4)[0]
    index = MatchIndex(64)
    index.replace_all((str(i), e) for i, e in enumerate(gallery))
    expected = sorted(((query.similarity(e), str(i)) for i, e in enumerate(gallery)), reverse=True)[:8]
    got = [(m.score, m.key) for m in index.search([query], threshold=-1.0)]
    assert [k for _, k in got] == [k for _, k in expected]
    assert np.allclose([s for s, _ in got], [s for s, _ in expected], atol=1e-5)


def test_upsert_and_remove() -> None:
    a, b = random_embeddings(2, seed=5)
    index = MatchIndex(64)
    index.upsert("x", a)
    assert [m.key for m in index.search([a], 0.99)] == ["x"]
    index.upsert("x", b)
    assert index.search([a], 0.99) == [] and len(index) == 1
    assert index.remove("x") and not index.remove("x")
    assert index.search([b], 0.0) == [] and len(index) == 0


def test_wrong_dimension_refused() -> None:
    index = MatchIndex(64)
    with pytest.raises(MalformedError):
        index.upsert("x", random_embeddings(1, seed=6, dim=32)[0])


def test_concurrent_searches_are_batched_and_each_gets_exactly_its_own_answer() -> None:
    """Sixteen threads searching at once share faiss calls, and each caller's matches are the
    ones it gets searching alone: its rows, its threshold, its k, in the same order."""
    gallery = random_embeddings(2000, seed=11)
    index = MatchIndex(64)
    index.replace_all((f"e{i}", e) for i, e in enumerate(gallery))
    rng = np.random.default_rng(12)
    asks = []
    for n in range(96):
        rows = int(rng.integers(1, 5))
        picked = [gallery[int(i)] for i in rng.integers(0, 2000, rows)]
        noisy = [Embedding.from_vector(p.vector + rng.normal(0, 0.02, 64)) for p in picked]
        asks.append(
            (
                noisy + random_embeddings(1, seed=100 + n),
                float(rng.choice([0.2, 0.5, 0.9])),
                int(rng.integers(1, 9)),
            )
        )
    alone = [index.search(q, t, k=k) for q, t, k in asks]
    calls: list[int] = []
    search_rows = index._search_rows

    def counted(matrix: np.ndarray, k: int) -> object:
        calls.append(len(matrix))
        return search_rows(matrix, k)

    index._batches._search_rows = counted  # type: ignore[assignment]
    start = threading.Barrier(16)

    def worker(mine: list[int]) -> list[tuple[int, list[Match]]]:
        start.wait()
        return [(i, index.search(*asks[i][:2], k=asks[i][2])) for i in mine]

    with ThreadPoolExecutor(16) as pool:
        together = dict(
            pair for got in pool.map(worker, [list(range(w, 96, 16)) for w in range(16)]) for pair in got
        )
    assert sum(calls) == sum(len(q) for q, _, _ in asks)
    assert len(calls) < 96, "no search was batched with another"
    for i, expected in enumerate(alone):
        got = together[i]
        assert [(m.query_index, m.key) for m in got] == [(m.query_index, m.key) for m in expected], i
        assert np.allclose([m.score for m in got], [m.score for m in expected], atol=1e-5)
    assert any(alone), "the asks found nothing: the comparison would be empty"


def test_a_failed_batch_fails_every_caller_in_it_and_the_next_search_works() -> None:
    gallery = random_embeddings(10, seed=13)
    index = MatchIndex(64)
    index.replace_all((f"e{i}", e) for i, e in enumerate(gallery))
    search_rows = index._search_rows

    def broken(matrix: np.ndarray, k: int) -> object:
        raise MemoryError("faiss could not allocate")

    index._batches._search_rows = broken  # type: ignore[assignment]
    with pytest.raises(MemoryError, match="allocate"):
        index.search([gallery[0]], 0.9)
    index._batches._search_rows = search_rows  # type: ignore[assignment]
    assert [m.key for m in index.search([gallery[3]], 0.99)] == ["e3"]
