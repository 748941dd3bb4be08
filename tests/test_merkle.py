"""The Merkle log: generated RFC-form proofs verify, mutations fail, erasure keeps proofs valid."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymerkle import InmemoryTree

from protocol.canonical import b64url_encode, canonical_bytes
from protocol.commitment import commit
from protocol.errors import ProofError
from protocol.merkle import (
    EMPTY_ROOT,
    MerkleLog,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
    verify_subtree_consistency,
)


def build(n: int) -> MerkleLog:
    log = MerkleLog()
    for i in range(n):
        assert log.append(f"leaf-{i}".encode()) == i
    return log


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH of RFC 9162 section 2.1.1, written recursively as the RFC states it."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


def test_roots_match_the_rfc_definition() -> None:
    log = MerkleLog()
    leaves: list[bytes] = []
    assert log.root() == EMPTY_ROOT
    for i in range(40):
        leaves.append(bytes([i]) * (i % 5))
        log.append(leaves[-1])
        assert log.root() == reference_root(leaves)
        assert log.root(i // 2) == reference_root(leaves[: i // 2])


def test_every_inclusion_proof_verifies_and_matches_pymerkle() -> None:
    log = build(33)
    tree = InmemoryTree()
    for i in range(33):
        tree.append_entry(f"leaf-{i}".encode())
    for size in range(1, 34):
        root = log.root(size)
        for index in range(size):
            proof = log.inclusion_proof(index, size)
            verify_inclusion(log.leaf_hash_at(index), index, size, proof, root)
            theirs = tree.prove_inclusion(index + 1, size)
            assert theirs.path[1:] == proof
            theirs.verify(log.leaf_hash_at(index), root)


def test_every_consistency_proof_verifies() -> None:
    log = build(33)
    for new in range(1, 34):
        for old in range(1, new + 1):
            verify_consistency(old, new, log.root(old), log.root(new), log.consistency_proof(old, new))


def test_subtree_consistency_for_aligned_subtrees() -> None:
    log = build(20)
    for size in range(1, 21):
        for width in (1, 2, 4, 8, 16):
            for start in range(0, size, width):
                end = min(start + width, size)
                sub = MerkleLog()
                for i in range(start, end):
                    sub.append(f"leaf-{i}".encode())
                proof = _subtree_proof(log, start, end, size)
                verify_subtree_consistency(start, end, size, sub.root(), log.root(size), proof)


def _subtree_proof(log: MerkleLog, start: int, end: int, size: int) -> list[bytes]:
    """Subtree proof built from the definition: prefix proof inside the node, then its path up."""
    width = 1 << (end - start - 1).bit_length()
    node_end = min(start + width, size)
    inner = MerkleLog()
    for i in range(start, node_end):
        inner.append(f"leaf-{i}".encode())
    proof = inner.consistency_proof(end - start, node_end - start) if end - start < node_end - start else []
    return proof + _node_path(log, start, node_end, 0, size)


def _node_path(log: MerkleLog, start: int, end: int, lo: int, hi: int) -> list[bytes]:
    if (lo, hi) == (start, end):
        return []
    k = 1 << ((hi - lo - 1).bit_length() - 1)
    if start < lo + k:
        return [*_node_path(log, start, end, lo, lo + k), log._subtree(lo + k, hi)]
    return [*_node_path(log, start, end, lo + k, hi), log._subtree(lo, lo + k)]


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 64), st.data())
def test_any_bit_flip_fails(size: int, data: st.DataObject) -> None:
    log = build(size)
    old = data.draw(st.integers(1, size - 1))
    index = data.draw(st.integers(0, size - 1))
    inclusion = log.inclusion_proof(index, size)
    consistency = log.consistency_proof(old, size)
    if inclusion:
        position = data.draw(st.integers(0, len(inclusion) - 1))
        bit = data.draw(st.integers(0, 255))
        mutated = list(inclusion)
        mutated[position] = bytes([mutated[position][0] ^ (1 << (bit % 8))]) + mutated[position][1:]
        with pytest.raises(ProofError):
            verify_inclusion(log.leaf_hash_at(index), index, size, mutated, log.root(size))
    position = data.draw(st.integers(0, len(consistency) - 1))
    mutated = list(consistency)
    mutated[position] = bytes([mutated[position][0] ^ 1]) + mutated[position][1:]
    with pytest.raises(ProofError):
        verify_consistency(old, size, log.root(old), log.root(size), mutated)
    with pytest.raises(ProofError):
        verify_consistency(old, size, log.root(old), log.root(old), consistency)


def test_erasing_payloads_keeps_every_proof_valid() -> None:
    payloads = [canonical_bytes({"entry": i, "embedding": "secret-bytes"}) for i in range(12)]
    salts = [bytes([i + 1]) * 32 for i in range(12)]
    leaves = [
        canonical_bytes({"header": {"event": i}, "commitment": b64url_encode(commit(s, p))})
        for i, (s, p) in enumerate(zip(salts, payloads, strict=True))
    ]
    log = MerkleLog()
    for leaf in leaves:
        log.append(leaf)
    root = log.root()
    proofs = {i: log.inclusion_proof(i) for i in range(12)}
    del payloads[3], salts[3]
    for i, leaf in enumerate(leaves):
        assert b"secret-bytes" not in leaf
        verify_inclusion(leaf_hash(leaf), i, 12, proofs[i], root)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((5, 4), "outside"),
        ((-1, 4), "outside"),
    ],
)
def test_out_of_range_requests_are_refused(args: tuple[int, int], message: str) -> None:
    with pytest.raises(ProofError, match=message):
        build(4).inclusion_proof(*args)


def test_oversized_proof_refused() -> None:
    with pytest.raises(ProofError, match="limit"):
        verify_inclusion(b"\x00" * 32, 0, 2, [b"\x00" * 32] * 200, b"\x00" * 32)
