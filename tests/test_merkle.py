"""The Merkle log: RFC-form proofs match the RFC's definitions and pymerkle, verify, and fail when
anything is changed; erasing a committed payload leaves every proof valid."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymerkle import BaseMerkleTree, InmemoryTree

from protocol.canonical import b64url_decode, b64url_encode, canonical_bytes, parse_json
from protocol.commitment import commit, new_salt, verify_commitment
from protocol.errors import CommitmentError, ConfigurationError, MalformedError, ProofError
from protocol.merkle import (
    EMPTY_ROOT,
    MAX_PROOF_HASHES,
    MAX_TREE_SIZE,
    CompactRange,
    MerkleLog,
    is_subtree,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
    verify_subtree_consistency,
    verify_subtree_inclusion,
)


class ListTree(BaseMerkleTree):  # type: ignore[misc]
    """A second pymerkle backend (leaf hashes in a list, subtree cache from 4 leaves up)."""

    def __init__(self) -> None:
        self.hashes: list[bytes] = []
        super().__init__("sha256", threshold=4)

    def _encode_entry(self, data: bytes) -> bytes:
        return data

    def _store_leaf(self, data: bytes, digest: bytes) -> int:
        self.hashes.append(digest)
        return len(self.hashes)

    def _get_leaf(self, index: int) -> bytes:
        return self.hashes[index - 1]

    def _get_leaves(self, offset: int, width: int) -> list[bytes]:
        return self.hashes[offset : offset + width]

    def _get_size(self) -> int:
        return len(self.hashes)


def leaves_of(n: int) -> list[bytes]:
    return [f"leaf-{i}".encode() for i in range(n)]


def build(leaves: Iterable[bytes], tree: BaseMerkleTree | None = None) -> MerkleLog:
    log = MerkleLog(tree)
    for i, leaf in enumerate(leaves):
        assert log.append(leaf) == i
    return log


# The RFC's definitions, written out recursively over the leaf list (RFC 9162 2.1.1, 2.1.3.1, 2.1.4.1).


def mth(d: list[bytes]) -> bytes:
    if not d:
        return EMPTY_ROOT
    if len(d) == 1:
        return leaf_hash(d[0])
    k = 1 << ((len(d) - 1).bit_length() - 1)
    return node_hash(mth(d[:k]), mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = 1 << ((len(d) - 1).bit_length() - 1)
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], complete: bool) -> list[bytes]:
    if m == len(d):
        return [] if complete else [mth(d)]
    k = 1 << ((len(d) - 1).bit_length() - 1)
    if m <= k:
        return [*subproof(m, d[:k], complete), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def subtrees(n: int) -> list[tuple[int, int]]:
    return [(s, e) for e in range(n + 1) for s in range(e + 1) if is_subtree(s, e)]


def flip(value: bytes, bit: int) -> bytes:
    bit %= len(value) * 8
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# Roots and subtree hashes.


def test_roots_and_subtree_hashes_match_the_rfc_definition() -> None:
    d = leaves_of(40)
    log = MerkleLog()
    assert log.root() == EMPTY_ROOT
    for n in range(1, 41):
        log.append(d[n - 1])
        assert log.root() == mth(d[:n])
    for size in range(41):
        assert log.root(size) == mth(d[:size])
    for start, end in subtrees(40):
        assert log.subtree_root(start, end) == mth(d[start:end])


def test_any_pymerkle_backend_gives_the_same_log() -> None:
    d = leaves_of(70)
    ours, theirs = build(d), build(d, ListTree())
    for size in range(71):
        assert ours.root(size) == theirs.root(size)
    for size in (1, 5, 16, 33, 64, 70):
        for index in range(size):
            assert ours.inclusion_proof(index, size) == theirs.inclusion_proof(index, size)
        for old in range(1, size + 1):
            assert ours.consistency_proof(old, size) == theirs.consistency_proof(old, size)


def test_a_tree_without_rfc_hashing_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="security=False"):
        MerkleLog(InmemoryTree(disable_security=True))
    with pytest.raises(ConfigurationError, match="sha512"):
        MerkleLog(InmemoryTree("sha512"))


# The worked examples of RFC 9162 section 2.1.5 and of the MTC draft's "Subtrees" section.


def test_rfc_9162_examples() -> None:
    d = leaves_of(7)
    log = build(d)
    a, b, c, dd, e, f, g = (leaf_hash(x) for x in d)
    h, i, j = node_hash(a, b), node_hash(c, dd), node_hash(e, f)
    k, l_ = node_hash(h, i), node_hash(j, g)
    assert log.root() == node_hash(k, l_)
    assert log.inclusion_proof(0) == [b, i, l_]
    assert log.inclusion_proof(3) == [c, h, l_]
    assert log.inclusion_proof(4) == [f, g, k]
    assert log.inclusion_proof(6) == [j, k]
    assert log.consistency_proof(3) == [c, dd, h, l_]
    assert log.consistency_proof(4) == [l_]
    assert log.consistency_proof(6) == [j, g, k]


def test_mtc_draft_examples() -> None:
    d = leaves_of(14)
    log = build(d)
    assert log.subtree_consistency_proof(4, 8) == [mth(d[0:4]), mth(d[8:14])]
    assert log.subtree_consistency_proof(8, 13) == [
        mth(d[12:13]),
        mth(d[13:14]),
        mth(d[8:12]),
        mth(d[0:8]),
    ]
    assert log.subtree_inclusion_proof(10, 8, 13) == [mth(d[11:12]), mth(d[8:10]), mth(d[12:13])]


@pytest.mark.parametrize(
    ("start", "end", "valid"),
    [
        (4, 8, True),
        (8, 13, True),
        (0, 9, True),
        (7, 9, False),
        (5, 5, True),
        (0, 0, True),
        (2, 5, False),
        (8, 12, True),
        (8, 17, False),
        (3, 2, False),
        (-1, 0, False),
    ],
)
def test_subtree_definition(start: int, end: int, valid: bool) -> None:
    assert is_subtree(start, end) is valid


# Every proof in small trees: equal to the definitions, and verifies.


def test_every_inclusion_proof_in_small_trees() -> None:
    d = leaves_of(40)
    log = build(d)
    for size in range(1, 41):
        root = log.root(size)
        for index in range(size):
            proof = log.inclusion_proof(index, size)
            assert proof == path(index, d[:size])
            verify_inclusion(leaf_hash(d[index]), index, size, proof, root)
            assert log.subtree_consistency_proof(index, index + 1, size) == proof


def test_every_consistency_proof_in_small_trees() -> None:
    d = leaves_of(40)
    log = build(d)
    for new in range(1, 41):
        for old in range(1, new + 1):
            proof = log.consistency_proof(old, new)
            assert proof == subproof(old, d[:new], True)
            verify_consistency(old, new, log.root(old), log.root(new), proof)
            assert log.subtree_consistency_proof(0, old, new) == proof
            verify_subtree_consistency(0, old, new, log.root(old), log.root(new), proof)


def test_every_subtree_proof_in_small_trees() -> None:
    d = leaves_of(33)
    log = build(d)
    for size in range(34):
        root = log.root(size)
        for start, end in subtrees(size):
            sub_root = log.subtree_root(start, end)
            verify_subtree_consistency(
                start, end, size, sub_root, root, log.subtree_consistency_proof(start, end, size)
            )
            for index in range(start, end):
                proof = log.subtree_inclusion_proof(index, start, end)
                assert proof == path(index - start, d[start:end])
                verify_subtree_inclusion(leaf_hash(d[index]), index, start, end, proof, sub_root)


def test_proofs_agree_with_pymerkle_for_random_sizes() -> None:
    rng = random.Random(9162)
    for size in sorted(rng.sample(range(1, 600), 25)):
        d = [rng.randbytes(rng.randrange(0, 40)) for _ in range(size)]
        tree = InmemoryTree()
        log = build(d, tree)
        root = log.root()
        assert root == tree.get_root()
        for index in sorted(rng.sample(range(size), min(size, 12))):
            ours = log.inclusion_proof(index)
            theirs = tree.prove_inclusion(index + 1, size)
            assert theirs.path[0] == leaf_hash(d[index])
            assert theirs.path[1:] == ours
            theirs.verify(leaf_hash(d[index]), root)
            verify_inclusion(leaf_hash(d[index]), index, size, ours, root)
        for old in sorted(rng.sample(range(1, size + 1), min(size, 12))):
            verify_consistency(old, size, log.root(old), root, log.consistency_proof(old))
            tree.prove_consistency(old, size).verify(log.root(old), root)


# Properties: random leaves, random sizes; any change to a proof or a root is refused.


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=24), min_size=1, max_size=80), st.data())
def test_inclusion_verifies_and_any_bit_flip_fails(d: list[bytes], data: st.DataObject) -> None:
    log = build(d)
    size = data.draw(st.integers(1, len(d)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    proof, root, leaf = log.inclusion_proof(index, size), log.root(size), leaf_hash(d[index])
    verify_inclusion(leaf, index, size, proof, root)
    bit = data.draw(st.integers(0, 255), label="bit")
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, proof, flip(root, bit))
    with pytest.raises(ProofError):
        verify_inclusion(flip(leaf, bit), index, size, proof, root)
    for position in range(len(proof)):
        mutated = list(proof)
        mutated[position] = flip(mutated[position], bit)
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, mutated, root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, [*proof, root], root)
    if proof:
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, proof[:-1], root)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=24), min_size=2, max_size=80), st.data())
def test_consistency_verifies_and_any_bit_flip_fails(d: list[bytes], data: st.DataObject) -> None:
    log = build(d)
    new = data.draw(st.integers(2, len(d)), label="new")
    old = data.draw(st.integers(1, new - 1), label="old")
    proof, root1, root2 = log.consistency_proof(old, new), log.root(old), log.root(new)
    verify_consistency(old, new, root1, root2, proof)
    bit = data.draw(st.integers(0, 255), label="bit")
    with pytest.raises(ProofError):
        verify_consistency(old, new, flip(root1, bit), root2, proof)
    with pytest.raises(ProofError):
        verify_consistency(old, new, root1, flip(root2, bit), proof)
    for position in range(len(proof)):
        mutated = list(proof)
        mutated[position] = flip(mutated[position], bit)
        with pytest.raises(ProofError):
            verify_consistency(old, new, root1, root2, mutated)
    with pytest.raises(ProofError):
        verify_consistency(old, new, root1, root2, proof[:-1])
    with pytest.raises(ProofError):
        verify_consistency(old, new, root1, root2, [*proof, root1])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=24), min_size=1, max_size=80), st.data())
def test_subtree_consistency_verifies_and_any_bit_flip_fails(d: list[bytes], data: st.DataObject) -> None:
    log = build(d)
    size = data.draw(st.integers(1, len(d)), label="size")
    start, end = data.draw(st.sampled_from([s for s in subtrees(size) if s[0] < s[1]]), label="subtree")
    proof = log.subtree_consistency_proof(start, end, size)
    sub_root, root = log.subtree_root(start, end), log.root(size)
    verify_subtree_consistency(start, end, size, sub_root, root, proof)
    bit = data.draw(st.integers(0, 255), label="bit")
    with pytest.raises(ProofError):
        verify_subtree_consistency(start, end, size, flip(sub_root, bit), root, proof)
    with pytest.raises(ProofError):
        verify_subtree_consistency(start, end, size, sub_root, flip(root, bit), proof)
    for position in range(len(proof)):
        mutated = list(proof)
        mutated[position] = flip(mutated[position], bit)
        with pytest.raises(ProofError):
            verify_subtree_consistency(start, end, size, sub_root, root, mutated)


# Erasure: leaves hold a header and a salted commitment, so erasing payload and salt breaks nothing.


def test_erasing_payloads_and_salts_keeps_every_proof_valid() -> None:
    payloads = {
        i: canonical_bytes({"entry": f"entry-{i:04d}", "embedding": "face-bytes-" * 8}) for i in range(13)
    }
    salts = {i: new_salt() for i in payloads}
    leaves = [
        canonical_bytes(
            {
                "header": {"event": f"event-{i:04d}", "kind": "registered"},
                "commitment": b64url_encode(commit(salts[i], payload)),
            }
        )
        for i, payload in payloads.items()
    ]
    log = build(leaves)
    size, root = log.size, log.root()
    inclusion = {i: log.inclusion_proof(i) for i in range(size)}
    consistency = {m: log.consistency_proof(m) for m in range(1, size + 1)}
    old_roots = {m: log.root(m) for m in range(1, size + 1)}
    erased = {3, 7, 12}
    guesses = {i: payloads[i] for i in erased}

    for i in erased:
        del payloads[i], salts[i]

    assert not any(b"face-bytes" in leaf for leaf in leaves)
    rebuilt = build(leaves)
    assert rebuilt.root() == root
    for i, leaf in enumerate(leaves):
        assert rebuilt.inclusion_proof(i) == inclusion[i]
        verify_inclusion(leaf_hash(leaf), i, size, inclusion[i], root)
    for m, proof in consistency.items():
        assert rebuilt.consistency_proof(m) == proof
        verify_consistency(m, size, old_roots[m], root, proof)
    for i, leaf in enumerate(leaves):
        commitment = b64url_decode(parse_json(leaf)["commitment"], length=32)
        if i in erased:
            with pytest.raises(CommitmentError):
                verify_commitment(commitment, new_salt(), guesses[i])
        else:
            verify_commitment(commitment, salts[i], payloads[i])


# Malformed verifier inputs are ProofError; impossible requests to the log are MalformedError.

H = bytes(32)
VERIFY_CASES: list[tuple[str, Callable[[], Any], str]] = [
    (
        "leaf hash too short",
        lambda: verify_inclusion(bytes(31), 0, 2, [H], H),
        "leaf hash: expected a 32-byte hash, got 31",
    ),
    (
        "leaf hash not bytes",
        lambda: verify_inclusion("ab" * 16, 0, 2, [H], H),
        "leaf hash: expected a 32-byte hash, got str",
    ),
    (
        "proof hash too long",
        lambda: verify_inclusion(H, 0, 2, [bytes(33)], H),
        r"proof\[0\]: expected a 32-byte hash, got 33",
    ),
    ("proof not a list", lambda: verify_inclusion(H, 0, 2, H, H), "expected a list of hashes, got bytes"),
    (
        "proof too long",
        lambda: verify_inclusion(H, 0, 2, [H] * (MAX_PROOF_HASHES + 1), H),
        "129 hashes, limit 128",
    ),
    ("negative index", lambda: verify_inclusion(H, -1, 2, [H], H), "leaf index -1 is not an integer"),
    ("index is a bool", lambda: verify_inclusion(H, False, 2, [H], H), "leaf index False"),
    (
        "size beyond uint64",
        lambda: verify_inclusion(H, 0, MAX_TREE_SIZE + 1, [H], H),
        "tree size 18446744073709551616",
    ),
    (
        "index not below size",
        lambda: verify_inclusion(H, 2, 2, [H], H),
        "leaf index 2 is not below tree size 2",
    ),
    (
        "empty tree",
        lambda: verify_inclusion(H, 0, 0, [], EMPTY_ROOT),
        "leaf index 0 is not below tree size 0",
    ),
    ("inclusion proof too long", lambda: verify_inclusion(H, 0, 2, [H, H], H), "has 2 hashes, expected 1"),
    ("inclusion proof too short", lambda: verify_inclusion(H, 0, 5, [H, H], H), "has 2 hashes, expected 3"),
    ("root wrong length", lambda: verify_inclusion(H, 0, 1, [], H[:31]), "given hash is 31 bytes"),
    (
        "root not bytes",
        lambda: verify_inclusion(H, 0, 1, [], None),
        "root hash: expected bytes, got NoneType",
    ),
    (
        "old size larger",
        lambda: verify_consistency(3, 2, H, H, [H]),
        "old tree size 3 is larger than new tree size 2",
    ),
    ("old size zero", lambda: verify_consistency(0, 2, EMPTY_ROOT, H, []), "from tree size 0"),
    ("equal sizes, proof given", lambda: verify_consistency(2, 2, H, H, [H]), "has 1 hashes, expected 0"),
    ("equal sizes, a fork", lambda: verify_consistency(2, 2, H, b"\x01" * 32, []), "a fork"),
    ("empty consistency proof", lambda: verify_consistency(1, 2, H, H, []), "empty consistency proof"),
    ("consistency proof too long", lambda: verify_consistency(1, 2, H, H, [H, H]), "too many hashes"),
    ("consistency proof too short", lambda: verify_consistency(3, 4, H, H, [H]), "too few hashes"),
    (
        "subtree not aligned",
        lambda: verify_subtree_inclusion(H, 7, 7, 9, [H], H),
        r"\[7, 9\) is not a subtree",
    ),
    ("subtree reversed", lambda: verify_subtree_inclusion(H, 1, 2, 1, [], H), r"\[2, 1\) is not a subtree"),
    ("index outside subtree", lambda: verify_subtree_inclusion(H, 3, 4, 8, [H, H], H), "outside the subtree"),
    (
        "subtree beyond tree",
        lambda: verify_subtree_consistency(4, 8, 7, H, H, [H]),
        "ends beyond tree size 7",
    ),
    (
        "empty subtree, proof given",
        lambda: verify_subtree_consistency(2, 2, 4, EMPTY_ROOT, H, [H]),
        "empty subtree",
    ),
    ("empty subtree, wrong hash", lambda: verify_subtree_consistency(2, 2, 4, H, H, []), "empty root"),
    ("whole tree, proof given", lambda: verify_subtree_consistency(0, 4, 4, H, H, [H]), "has 1 hashes"),
    ("whole tree, a fork", lambda: verify_subtree_consistency(0, 4, 4, H, b"\x01" * 32, []), "a fork"),
    ("subtree proof empty", lambda: verify_subtree_consistency(0, 3, 4, H, H, []), "empty proof"),
    ("subtree proof too long", lambda: verify_subtree_consistency(4, 8, 8, H, H, [H, H]), "too many hashes"),
    ("subtree proof too short", lambda: verify_subtree_consistency(4, 6, 8, H, H, [H]), "too few hashes"),
]


@pytest.mark.parametrize(("call", "message"), [c[1:] for c in VERIFY_CASES], ids=[c[0] for c in VERIFY_CASES])
def test_malformed_verifier_inputs_are_proof_errors(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(ProofError, match=message):
        call()


LOG = build(leaves_of(4))
LOG_CASES: list[tuple[str, Callable[[], Any], str]] = [
    ("leaf beyond the log", lambda: LOG.leaf_hash_at(4), "leaf index 4 is outside a tree of size 4"),
    ("negative leaf", lambda: LOG.leaf_hash_at(-1), "leaf index -1"),
    ("root beyond the log", lambda: LOG.root(5), "tree size 5 is not within 0..4"),
    ("negative root size", lambda: LOG.root(-1), "tree size -1"),
    (
        "inclusion index too big",
        lambda: LOG.inclusion_proof(4, 4),
        "leaf index 4 is outside a tree of size 4",
    ),
    (
        "inclusion in a smaller tree",
        lambda: LOG.inclusion_proof(2, 2),
        "leaf index 2 is outside a tree of size 2",
    ),
    ("inclusion in an empty tree", lambda: LOG.inclusion_proof(0, 0), "tree size 0 is not within 1..4"),
    ("inclusion beyond the log", lambda: LOG.inclusion_proof(0, 5), "tree size 5 is not within 1..4"),
    ("consistency from 0", lambda: LOG.consistency_proof(0, 4), "old tree size 0 is not within 1..4"),
    ("consistency shrinking", lambda: LOG.consistency_proof(3, 2), "old tree size 3 is not within 1..2"),
    ("consistency beyond the log", lambda: LOG.consistency_proof(2, 5), "tree size 5"),
    ("subtree not aligned", lambda: LOG.subtree_root(1, 3), r"\[1, 3\) is not a subtree"),
    ("subtree beyond the log", lambda: LOG.subtree_root(4, 5), "ends beyond tree size 4"),
    ("subtree inclusion outside", lambda: LOG.subtree_inclusion_proof(1, 2, 4), "outside the subtree"),
    ("subtree proof beyond size", lambda: LOG.subtree_consistency_proof(2, 4, 3), "ends beyond tree size 3"),
]


@pytest.mark.parametrize(("call", "message"), [c[1:] for c in LOG_CASES], ids=[c[0] for c in LOG_CASES])
def test_impossible_log_requests_are_malformed(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(MalformedError, match=message):
        call()


def test_log_holds_bytes_only() -> None:
    with pytest.raises(TypeError, match="got str"):
        MerkleLog().append("leaf")  # type: ignore[arg-type]


def test_trivial_proofs() -> None:
    log = build(leaves_of(5))
    assert log.consistency_proof(5) == []
    assert log.subtree_consistency_proof(3, 3) == []
    assert log.subtree_consistency_proof(0, 5) == []
    verify_consistency(5, 5, log.root(), log.root(), [])
    verify_subtree_consistency(3, 3, 5, EMPTY_ROOT, log.root(), [])
    assert log.inclusion_proof(0, 1) == []
    verify_inclusion(log.leaf_hash_at(0), 0, 1, [], log.root(1))


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=300), st.data())
def test_a_compact_range_extended_by_pages_has_the_logs_root_at_every_size(
    size: int, data: st.DataObject
) -> None:
    """The follower's frontier: any split into pages, stored and read back between them, gives
    MTH at every size, the same root as the RFC log over pymerkle."""
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    log = MerkleLog(InmemoryTree())
    for i in range(size):
        log.append(i.to_bytes(4, "big"))
    frontier = CompactRange()
    done = 0
    while done < size:
        step = data.draw(st.integers(min_value=1, max_value=size - done))
        frontier.extend(leaves[done : done + step])
        done += step
        frontier = CompactRange.from_bytes(frontier.size, frontier.to_bytes())
        assert frontier.size == done
        assert frontier.root() == log.root(done)
    assert CompactRange.of_leaf_hashes(leaves).root() == log.root()


def test_a_compact_range_refuses_hashes_that_cannot_be_its_edge() -> None:
    h = leaf_hash(b"x")
    assert CompactRange().root() == EMPTY_ROOT
    with pytest.raises(ProofError, match="size 3 holds 2 hashes, got 1"):
        CompactRange(3, [h])
    with pytest.raises(ProofError, match="whole 32-byte hashes, got 33 bytes"):
        CompactRange.from_bytes(1, h + b"\x00")
    with pytest.raises(ProofError, match="expected a 32-byte hash"):
        CompactRange(1, [h[:31]])
    with pytest.raises(ProofError, match="expected a 32-byte hash"):
        CompactRange(1, [h]).append(b"short")
    with pytest.raises(ProofError, match="not an integer"):
        CompactRange(-1, [])


def test_a_batch_of_inclusion_proofs_is_each_leafs_proof() -> None:
    """``inclusion_proofs`` gives exactly ``inclusion_proof`` for every leaf of the range, at any size."""
    log = MerkleLog()
    for i in range(300):
        log.append(f"leaf {i}".encode())
    for size in (1, 2, 3, 7, 8, 9, 64, 129, 255, 256, 300):
        for start, end in ((0, size), (size - 1, size), (size // 3, max(size // 3 + 1, size // 2)), (0, 1)):
            assert log.inclusion_proofs(start, end, size) == [
                log.inclusion_proof(i, size) for i in range(start, end)
            ], (start, end, size)
    for bad in ((0, 0, 5), (3, 2, 5), (4, 6, 5), (0, 1, 301)):
        with pytest.raises(MalformedError):
            log.inclusion_proofs(*bad)
