"""The node's append-only event log as an RFC 9162 Merkle tree, with proofs in the RFC's form.

Leaves and tree hashes come from ``pymerkle`` (its hashing with second-preimage protection is
RFC 9162's: leaf ``SHA-256(0x00 || d)``, node ``SHA-256(0x01 || l || r)``, empty ``SHA-256()``),
so storage backends plug in as ``pymerkle.BaseMerkleTree`` subclasses. pymerkle's own proof
objects are not in RFC form (its consistency paths differ), and peers, auditors and other
implementations exchange RFC audit paths, so proof generation (RFC 9162 2.1.3.1, 2.1.4.1) and
verification (2.1.3.2, 2.1.4.2) follow the RFC text and are checked against the reference
implementation's vectors in ``tests/vectors/conformance/rfc6962``. The subtree verifiers
generalise the same walk to a subtree ``[start, end)`` (the Merkle Tree Certificates drafts).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from pymerkle import BaseMerkleTree, InmemoryTree

from protocol.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_BYTES",
    "MAX_PROOF_LENGTH",
    "MAX_TREE_SIZE",
    "MerkleLog",
    "leaf_hash",
    "node_hash",
    "verify_consistency",
    "verify_inclusion",
    "verify_subtree_consistency",
    "verify_subtree_inclusion",
]

HASH_BYTES = 32
MAX_TREE_SIZE = (1 << 63) - 1
MAX_PROOF_LENGTH = 128
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly less than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _bit_ceil(n: int) -> int:
    return 1 << (n - 1).bit_length()


class MerkleLog:
    """Append-only leaves over any pymerkle tree; proofs as RFC 9162 audit paths (0-based indexes)."""

    def __init__(self, tree: BaseMerkleTree | None = None) -> None:
        self._tree = tree if tree is not None else InmemoryTree()

    @property
    def size(self) -> int:
        return int(self._tree.get_size())

    def append(self, leaf_data: bytes) -> int:
        """Append one leaf; return its 0-based index."""
        return int(self._tree.append_entry(leaf_data)) - 1

    def leaf_hash_at(self, index: int) -> bytes:
        self._check_size(index + 1, "leaf index")
        return bytes(self._tree.get_leaf(index + 1))

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        self._check_size(size, "tree size", allow_zero=True)
        return bytes(self._tree.get_root(size))

    def _check_size(self, size: int, what: str, *, allow_zero: bool = False) -> None:
        if not (0 if allow_zero else 1) <= size <= self.size:
            raise ProofError(f"{what} {size} is outside the log (size {self.size})")

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range of the RFC's decomposition."""
        return bytes(self._tree._get_root(start, end))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 9162 section 2.1.3.1."""
        size = self.size if size is None else size
        self._check_size(size, "tree size")
        if not 0 <= index < size:
            raise ProofError(f"leaf index {index} is outside a tree of size {size}")
        return self._path(index, 0, size)

    def _path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return [*self._path(m, start, start + k), self._subtree(start + k, end)]
        return [*self._path(m - k, start + k, end), self._subtree(start, start + k)]

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[0:new_size]) of RFC 9162 section 2.1.4.1."""
        new_size = self.size if new_size is None else new_size
        self._check_size(new_size, "tree size", allow_zero=True)
        if not 0 <= old_size <= new_size:
            raise ProofError(f"old size {old_size} is not within 0..{new_size}")
        if old_size in (0, new_size):
            return []
        return self._subproof(old_size, 0, new_size, True)

    def _subproof(self, m: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [self._subtree(start, end)]
        k = _split(n)
        if m <= k:
            return [*self._subproof(m, start, start + k, complete), self._subtree(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self._subtree(start, start + k)]


def _check_hashes(proof: Sequence[bytes]) -> None:
    if len(proof) > MAX_PROOF_LENGTH:
        raise ProofError(f"proof has {len(proof)} hashes, limit {MAX_PROOF_LENGTH}")
    for i, value in enumerate(proof):
        if not isinstance(value, bytes) or len(value) != HASH_BYTES:
            raise ProofError(f"proof[{i}] is not a {HASH_BYTES}-byte hash")


def _check_range(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_TREE_SIZE:
            raise ProofError(f"{name} {value!r} is not within 0..{MAX_TREE_SIZE}")


def _equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def verify_inclusion(leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 section 2.1.3.2: raise ``ProofError`` unless ``leaf`` is at ``index`` under ``root``."""
    _check_range(index=index, tree_size=tree_size)
    _check_hashes(proof)
    if len(leaf) != HASH_BYTES:
        raise ProofError(f"leaf hash is {len(leaf)} bytes, expected {HASH_BYTES}")
    if index >= tree_size:
        raise ProofError(f"leaf index {index} is not below tree size {tree_size}")
    fn, sn, r = index, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError(f"proof has {len(proof)} hashes, more than a tree of size {tree_size} needs")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"proof has {len(proof)} hashes, too few for a tree of size {tree_size}")
    if not _equal(r, root):
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the root of size {tree_size}")


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 section 2.1.4.2: raise ``ProofError`` unless tree ``size1`` is a prefix of tree ``size2``."""
    _check_range(size1=size1, size2=size2)
    _check_hashes(proof)
    if size1 > size2:
        raise ProofError(f"old size {size1} is larger than new size {size2}")
    if size1 == 0:
        raise ProofError("consistency with an empty tree proves nothing; refusing a proof from size 0")
    if size1 == size2:
        if proof:
            raise ProofError(f"sizes are equal ({size1}) but the proof has {len(proof)} hashes")
        if not _equal(root1, root2):
            raise ProofError(f"two different roots for the same tree size {size1} (a fork)")
        return
    _walk_consistency(0, size1, size2, root1, root2, proof)


def _walk_consistency(
    start: int, end: int, size: int, first: bytes, second: bytes, proof: Sequence[bytes]
) -> None:
    """The RFC 9162 consistency walk, for the subtree ``[start, end)`` of a tree of ``size`` leaves.

    With ``start == 0`` this is exactly section 2.1.4.2. For ``start > 0`` a left sibling only
    enters the subtree's hash when it lies inside the subtree.
    """
    level_of_subtree = (_bit_ceil(end - start)).bit_length() - 1
    nodes = list(proof)
    fn, sn, level = end - 1, size - 1, 0
    if end - start == 1 << level_of_subtree or end == size:
        nodes.insert(0, first)
        fn, sn, level = fn >> level_of_subtree, sn >> level_of_subtree, level_of_subtree
    while fn & 1 and level < level_of_subtree:
        fn >>= 1
        sn >>= 1
        level += 1
    if not nodes:
        raise ProofError(f"empty proof between sizes {end} and {size}")
    fr = sr = nodes[0]
    for c in nodes[1:]:
        if sn == 0:
            raise ProofError(f"proof has {len(proof)} hashes, more than sizes {end} -> {size} need")
        if fn & 1 or fn == sn:
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
                level += 1
            if (fn - 1) << level >= start:
                fr = node_hash(c, fr)
            sr = node_hash(c, sr)
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
        level += 1
    if sn != 0:
        raise ProofError(f"proof has {len(proof)} hashes, too few for sizes {end} -> {size}")
    if not _equal(fr, first):
        raise ProofError(f"consistency proof does not lead to the old root (size {end})")
    if not _equal(sr, second):
        raise ProofError(f"consistency proof does not lead to the new root (size {size})")


def _check_subtree(start: int, end: int) -> None:
    if not start < end:
        raise ProofError(f"subtree [{start}, {end}) is empty")
    if start % _bit_ceil(end - start):
        raise ProofError(
            f"[{start}, {end}) is not a subtree: start is not a multiple of {_bit_ceil(end - start)}"
        )


def verify_subtree_inclusion(
    leaf: bytes, index: int, start: int, end: int, proof: Sequence[bytes], subtree_root: bytes
) -> None:
    """Inclusion of leaf ``index`` in the subtree ``[start, end)`` whose hash is ``subtree_root``."""
    _check_range(index=index, start=start, end=end)
    _check_subtree(start, end)
    if not start <= index < end:
        raise ProofError(f"leaf index {index} is outside the subtree [{start}, {end})")
    verify_inclusion(leaf, index - start, end - start, proof, subtree_root)


def verify_subtree_consistency(
    start: int, end: int, size: int, subtree_root: bytes, root: bytes, proof: Sequence[bytes]
) -> None:
    """The subtree ``[start, end)`` with hash ``subtree_root`` is part of the tree ``size`` with ``root``."""
    _check_range(start=start, end=end, size=size)
    _check_hashes(proof)
    if end > size:
        raise ProofError(f"subtree end {end} is beyond tree size {size}")
    if start == end:
        if proof or not _equal(subtree_root, EMPTY_ROOT):
            raise ProofError("an empty subtree has the empty root and an empty proof")
        return
    _check_subtree(start, end)
    if start == 0 and end == size:
        verify_consistency(end, size, subtree_root, root, proof)
        return
    _walk_consistency(start, end, size, subtree_root, root, proof)
