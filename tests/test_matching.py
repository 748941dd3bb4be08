"""Local matching with the real faiss index: exactness, thresholds, updates, swaps."""

from __future__ import annotations

import numpy as np
import pytest

from node.records.matching import MatchIndex
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
