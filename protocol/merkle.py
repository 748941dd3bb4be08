"""The node's append-only event log as an RFC 9162 Merkle tree, with proofs in the RFC's form.

Peers and auditors check a node's log with audit paths: inclusion proofs (RFC 9162 2.1.3) and
consistency proofs (2.1.4), each a list of 32-byte hashes that any RFC implementation reads.
Leaf storage, leaf hashes and subtree hashes come from ``pymerkle`` (any ``BaseMerkleTree``, so
``node/`` plugs in its SQL table): its hashing with second-preimage protection is the RFC's
(leaf ``SHA-256(0x00 || d)``, node ``SHA-256(0x01 || l || r)``, empty ``SHA-256()``, same split).
pymerkle's own consistency paths are a different decomposition, so proofs are generated here from
its subtree hashes, following the RFC's PATH and PROOF/SUBPROOF definitions, and verified by the
RFC's algorithms step by step (docs/adr/0001-merkle-proofs.md).

The subtree proofs of the Merkle Tree Certificates draft (draft-ietf-plants-merkle-tree-certs,
"Subtrees") prove a range ``[start, end)`` against a tree; they are implemented from the draft's
text the same way. Everything is pinned by the reference implementation's vectors in
``tests/vectors/conformance/rfc6962``.

Verifiers raise ``ProofError`` for anything that does not check out, malformed input included
(a leaf or proof hash that is not 32 bytes, a size outside uint64, a proof longer than any tree
needs, a root of the wrong length where it is compared with a computed hash). The log raises
``MalformedError`` when asked for a proof of leaves or sizes it does not hold.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from pymerkle import BaseMerkleTree, InmemoryTree

from protocol.errors import ConfigurationError, MalformedError, ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_BYTES",
    "MAX_PROOF_HASHES",
    "MAX_TREE_SIZE",
    "CompactRange",
    "MerkleLog",
    "is_subtree",
    "leaf_hash",
    "node_hash",
    "verify_consistency",
    "verify_inclusion",
    "verify_subtree_consistency",
    "verify_subtree_inclusion",
]

HASH_BYTES = 32
MAX_TREE_SIZE = 2**64 - 1
"""RFC 9162 tree sizes and leaf indexes are uint64; larger values are refused before hashing."""
MAX_PROOF_HASHES = 2 * 64
"""No proof in a tree of at most ``MAX_TREE_SIZE`` leaves is longer; longer ones are refused unread."""
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}): the root of the empty tree."""


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d), RFC 9162 section 2.1.1."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly less than ``n`` (the RFC's ``k``; n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _bit_ceil(n: int) -> int:
    """The smallest power of two greater than or equal to ``n`` (1 for 0)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def is_subtree(start: int, end: int) -> bool:
    """``[start, end)`` is a subtree (MTC draft): ``start <= end``, start a multiple of BIT_CEIL(end - start)."""
    return 0 <= start <= end and start % _bit_ceil(end - start) == 0


class CompactRange:
    """The right edge of a log's tree: enough to extend its root with new leaves, and no more.

    A follower checks each page of a peer's log against the peer's signed root for the events
    held plus the page. Recomputing that root from every held leaf costs O(E) per page and
    O(E^2) to catch up; the compact range ("Merkle frontier", as transparency-dev's ``compact``
    package keeps it) of the first ``size`` leaves is one hash per set bit of ``size``: the
    roots of the perfect subtrees ``[0, 2^a)``, ``[2^a, 2^a + 2^b)``... from left to right, so
    appending a page and taking its root costs O(page + log E). The root folds the hashes from
    the right, which is MTH's split at the largest power of two below the size (RFC 9162 2.1.1):
    the same root as ``MerkleLog.root``, which the tests check against the RFC's vectors.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        _check_size(size, "compact range size")
        held = list(hashes)
        if len(held) != size.bit_count():
            raise ProofError(
                f"a compact range of size {size} holds {size.bit_count()} hashes, got {len(held)}"
            )
        for h in held:
            _check_hash(h, "compact range hash")
        self._size, self._hashes = size, held

    @classmethod
    def of_leaf_hashes(cls, hashes: Sequence[bytes]) -> CompactRange:
        """The compact range of a log whose leaf hashes are ``hashes``, in order."""
        out = cls()
        out.extend(hashes)
        return out

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> CompactRange:
        """Read ``to_bytes``: the hashes concatenated, left to right."""
        if len(data) % HASH_BYTES:
            raise ProofError(f"a compact range is whole {HASH_BYTES}-byte hashes, got {len(data)} bytes")
        return cls(size, [data[i : i + HASH_BYTES] for i in range(0, len(data), HASH_BYTES)])

    @property
    def size(self) -> int:
        return self._size

    def to_bytes(self) -> bytes:
        return b"".join(self._hashes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash: merge equal-sized subtrees at the right edge, as binary addition carries."""
        _check_hash(leaf, "leaf hash")
        carry, size = leaf, self._size
        while size & 1:
            carry = node_hash(self._hashes.pop(), carry)
            size >>= 1
        self._hashes.append(carry)
        self._size += 1

    def extend(self, leaves: Sequence[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """MTH(D[0:size]), ``EMPTY_ROOT`` for an empty log."""
        if not self._hashes:
            return EMPTY_ROOT
        root = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            root = node_hash(left, root)
        return root


class MerkleLog:
    """An append-only log over any pymerkle tree; 0-based indexes, proofs as RFC 9162 hash lists.

    Reads hold the tree's lock, so a size check and the proof built for that size see the same
    leaves even while another thread appends through the same tree.
    """

    def __init__(self, tree: BaseMerkleTree | None = None) -> None:
        tree = InmemoryTree() if tree is None else tree
        if tree.algorithm != "sha256" or not tree.security:
            raise ConfigurationError(
                f"Merkle log: expected a SHA-256 pymerkle tree with second-preimage prefixes, "
                f"got {tree.algorithm} with security={tree.security}"
            )
        self._tree = tree

    @property
    def size(self) -> int:
        """The number of leaves."""
        return int(self._tree.get_size())

    def append(self, leaf_data: bytes) -> int:
        """Append one leaf (its bytes, hashed as ``leaf_hash``); return its 0-based index."""
        if not isinstance(leaf_data, bytes):
            raise TypeError(f"leaf data must be bytes, got {type(leaf_data).__name__}")
        return int(self._tree.append_entry(leaf_data)) - 1

    def leaf_hash_at(self, index: int) -> bytes:
        """The stored leaf hash of leaf ``index``."""
        with self._tree.lock:
            self._check_index(index, self.size)
            return bytes(self._tree.get_leaf(index + 1))

    def root(self, size: int | None = None) -> bytes:
        """MTH(D[0:size]); the current root by default, ``EMPTY_ROOT`` for size 0."""
        with self._tree.lock:
            size = self._check_size(size, low=0)
            return bytes(self._tree.get_root(size))

    def subtree_root(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) of a subtree held by the log."""
        with self._tree.lock:
            self._check_subtree(start, end, self.size)
            return self._mth(start, end)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 9162 section 2.1.3.1 (the audit path, leaf excluded)."""
        with self._tree.lock:
            size = self._check_size(size, low=1)
            self._check_index(index, size)
            return self._path(index, 0, size)

    def inclusion_proofs(self, start: int, end: int, size: int | None = None) -> list[list[bytes]]:
        """``inclusion_proof(i, size)`` for every ``i`` in ``[start, end)``, from one read of the leaves.

        Neighbouring leaves share most of their audit paths: the leaf hashes of the aligned window
        around the range are read once and the subtree hashes inside it computed once each, so a
        batch of ``n`` proofs costs O(n + log size) hashes and one read of the storage, not ``n``
        reads of up to ``log size`` ranges each. The hashes outside the window are the tree's own
        (pymerkle caches the large ones). The proofs are exactly ``inclusion_proof``'s.
        """
        with self._tree.lock:
            size = self._check_size(size, low=1)
            if not 0 <= start < end <= size:
                raise MalformedError(
                    f"leaf range [{start}, {end}) is not a non-empty range of a tree of size {size}"
                )
            width = max(_bit_ceil(end - start), 2)
            lo = start - start % width
            hi = min(size, (end - 1) // width * width + width)
            leaves = [bytes(h) for h in self._tree._get_leaves(lo, hi - lo)]
            memo: dict[tuple[int, int], bytes] = {}

            def mth(a: int, b: int) -> bytes:
                if not (lo <= a and b <= hi):
                    return self._mth(a, b)
                if b - a == 1:
                    return leaves[a - lo]
                got = memo.get((a, b))
                if got is None:
                    k = _split(b - a)
                    got = memo[(a, b)] = node_hash(mth(a, a + k), mth(a + k, b))
                return got

            def path(m: int, a: int, n: int) -> list[bytes]:
                if n == 1:
                    return []
                k = _split(n)
                if m < k:
                    return [*path(m, a, k), mth(a + k, a + n)]
                return [*path(m - k, a + k, n - k), mth(a, a + k)]

            return [path(i, 0, size) for i in range(start, end)]

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[0:new_size]) of RFC 9162 section 2.1.4.1; empty if the sizes are equal."""
        with self._tree.lock:
            new_size = self._check_size(new_size, low=1)
            if not 1 <= old_size <= new_size:
                raise MalformedError(f"old tree size {old_size} is not within 1..{new_size}")
            return self._subproof(old_size, 0, new_size, True)

    def subtree_inclusion_proof(self, index: int, start: int, end: int) -> list[bytes]:
        """PATH(index - start, D[start:end]): leaf ``index`` in the subtree ``[start, end)``."""
        with self._tree.lock:
            self._check_subtree(start, end, self.size)
            if not start <= index < end:
                raise MalformedError(f"leaf index {index} is outside the subtree [{start}, {end})")
            return self._path(index - start, start, end - start)

    def subtree_consistency_proof(self, start: int, end: int, size: int | None = None) -> list[bytes]:
        """SUBTREE_PROOF(start, end, D[0:size]) of the MTC draft: ``[start, end)`` is part of the tree."""
        with self._tree.lock:
            size = self._check_size(size, low=0)
            self._check_subtree(start, end, size)
            if start == end:
                return []
            return self._subtree_subproof(start, end, 0, size, True)

    def _check_size(self, size: int | None, *, low: int) -> int:
        held = self.size
        if size is None:
            size = held
        if not low <= size <= held:
            raise MalformedError(
                f"tree size {size} is not within {low}..{held} (the log holds {held} leaves)"
            )
        return size

    @staticmethod
    def _check_index(index: int, size: int) -> None:
        if not 0 <= index < size:
            raise MalformedError(f"leaf index {index} is outside a tree of size {size}")

    @staticmethod
    def _check_subtree(start: int, end: int, size: int) -> None:
        if not is_subtree(start, end):
            raise MalformedError(f"[{start}, {end}) is not a subtree")
        if end > size:
            raise MalformedError(f"subtree [{start}, {end}) ends beyond tree size {size}")

    def _mth(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) from pymerkle, for the aligned ranges the RFC's recursions visit."""
        return bytes(self._tree._get_root(start, end))

    def _path(self, m: int, lo: int, n: int) -> list[bytes]:
        """PATH(m, D[lo:lo+n]), RFC 9162 section 2.1.3.1."""
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return [*self._path(m, lo, k), self._mth(lo + k, lo + n)]
        return [*self._path(m - k, lo + k, n - k), self._mth(lo, lo + k)]

    def _subproof(self, m: int, lo: int, n: int, complete: bool) -> list[bytes]:
        """SUBPROOF(m, D[lo:lo+n], b), RFC 9162 section 2.1.4.1."""
        if m == n:
            return [] if complete else [self._mth(lo, lo + n)]
        k = _split(n)
        if m <= k:
            return [*self._subproof(m, lo, k, complete), self._mth(lo + k, lo + n)]
        return [*self._subproof(m - k, lo + k, n - k, False), self._mth(lo, lo + k)]

    def _subtree_subproof(self, start: int, end: int, lo: int, n: int, complete: bool) -> list[bytes]:
        """SUBTREE_SUBPROOF(start, end, D[lo:lo+n], b) of the MTC draft (start, end relative to lo)."""
        if start == 0 and end == n:
            return [] if complete else [self._mth(lo, lo + n)]
        k = _split(n)
        if end <= k:
            return [*self._subtree_subproof(start, end, lo, k, complete), self._mth(lo + k, lo + n)]
        if k <= start:
            return [
                *self._subtree_subproof(start - k, end - k, lo + k, n - k, complete),
                self._mth(lo, lo + k),
            ]
        return [*self._subtree_subproof(0, end - k, lo + k, n - k, False), self._mth(lo, lo + k)]


def _check_size(value: int, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_TREE_SIZE:
        raise ProofError(f"{what} {value!r:.40} is not an integer within 0..{MAX_TREE_SIZE}")


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_BYTES:
        got = f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
        raise ProofError(f"{what}: expected a {HASH_BYTES}-byte hash, got {got}")


def _check_proof(proof: Sequence[bytes]) -> list[bytes]:
    if isinstance(proof, bytes | str) or not isinstance(proof, Sequence):
        raise ProofError(f"proof: expected a list of hashes, got {type(proof).__name__}")
    if len(proof) > MAX_PROOF_HASHES:
        raise ProofError(f"proof has {len(proof)} hashes, limit {MAX_PROOF_HASHES}")
    for i, value in enumerate(proof):
        _check_hash(value, f"proof[{i}]")
    return list(proof)


def _check_given_hash(value: bytes, what: str) -> None:
    """A root the caller supplies must be bytes; its length is checked where it is compared.

    Only the trivial cases (equal sizes, the whole tree) compare two given roots with each other;
    there the reference vectors treat roots as opaque bytes, and so does this module.
    """
    if not isinstance(value, bytes):
        raise ProofError(f"{what}: expected bytes, got {type(value).__name__}")


def _equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def _require_match(computed: bytes, given: bytes, failure: str) -> None:
    if len(given) != HASH_BYTES:
        raise ProofError(f"{failure}: the given hash is {len(given)} bytes, expected {HASH_BYTES}")
    if not _equal(computed, given):
        raise ProofError(failure)


def _inclusion_proof_length(index: int, size: int) -> int:
    """How many hashes PATH(index, D[size]) has: siblings below the right border, then on it."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _evaluate_inclusion(leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes]) -> bytes:
    """Steps 1-5 of RFC 9162 section 2.1.3.2: the root that ``proof`` leads to from ``leaf``."""
    _check_size(index, "leaf index")
    _check_size(tree_size, "tree size")
    _check_hash(leaf, "leaf hash")
    path = _check_proof(proof)
    # 1. leaf_index must be below tree_size.
    if index >= tree_size:
        raise ProofError(f"leaf index {index} is not below tree size {tree_size}")
    wrong_length = ProofError(
        f"inclusion proof for leaf {index} in a tree of size {tree_size} has {len(path)} hashes, "
        f"expected {_inclusion_proof_length(index, tree_size)}"
    )
    # 2. Set fn to leaf_index and sn to tree_size - 1.
    fn, sn = index, tree_size - 1
    # 3. Set r to hash.
    r = leaf
    # 4. For each value p in the inclusion_path array:
    for p in path:
        # a. If sn is 0, stop and fail.
        if sn == 0:
            raise wrong_length
        # b. If LSB(fn) is set, or fn equals sn: p is a left sibling.
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # ii. Right-shift fn and sn equally until LSB(fn) is set or fn is 0.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        # c. Right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 5. sn must be 0 (the root comparison is the caller's).
    if sn != 0:
        raise wrong_length
    return r


def verify_inclusion(leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 section 2.1.3.2: raise ``ProofError`` unless ``leaf`` is leaf ``index`` under ``root``."""
    _check_given_hash(root, "root hash")
    _require_match(
        _evaluate_inclusion(leaf, index, tree_size, proof),
        root,
        f"inclusion proof for leaf {index} does not lead to the root of tree size {tree_size}",
    )


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 section 2.1.4.2: raise ``ProofError`` unless tree ``size1`` is a prefix of tree ``size2``.

    The RFC's algorithm covers ``0 < size1 < size2``. Equal sizes need an empty proof and equal
    roots (different roots are a fork). Size 0 is refused, as the reference implementation does:
    the empty tree is a prefix of everything, so a "proof" from it proves nothing.
    """
    _check_size(size1, "old tree size")
    _check_size(size2, "new tree size")
    _check_given_hash(root1, "old root hash")
    _check_given_hash(root2, "new root hash")
    path = _check_proof(proof)
    if size1 > size2:
        raise ProofError(f"old tree size {size1} is larger than new tree size {size2}")
    if size1 == 0:
        raise ProofError("no consistency proof exists from tree size 0 (RFC 9162 requires 0 < first)")
    if size1 == size2:
        if path:
            raise ProofError(
                f"tree sizes are equal ({size1}) but the proof has {len(path)} hashes, expected 0"
            )
        if not _equal(root1, root2):
            raise ProofError(f"two different roots for tree size {size1} (a fork)")
        return
    # 1. If consistency_path is empty, stop and fail.
    if not path:
        raise ProofError(f"empty consistency proof from tree size {size1} to {size2}")
    # 2. If first is an exact power of 2, prepend first_hash to consistency_path.
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    # 3. Set fn to first - 1 and sn to second - 1.
    fn, sn = size1 - 1, size2 - 1
    # 4. If LSB(fn) is set, right-shift fn and sn equally until LSB(fn) is not set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. Set both fr and sr to the first value in consistency_path.
    fr = sr = path[0]
    # 6. For each subsequent value c in consistency_path:
    for c in path[1:]:
        # a. If sn is 0, stop and fail.
        if sn == 0:
            raise ProofError(
                f"consistency proof from tree size {size1} to {size2} has too many hashes ({len(proof)})"
            )
        # b. If LSB(fn) is set, or fn equals sn: c is a left sibling in both trees.
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            # ii. Right-shift fn and sn equally until LSB(fn) is set or fn is 0.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        # c. Right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 7. fr must equal first_hash, sr second_hash, and sn must be 0.
    if sn != 0:
        raise ProofError(
            f"consistency proof from tree size {size1} to {size2} has too few hashes ({len(proof)})"
        )
    _require_match(fr, root1, f"consistency proof does not lead to the old root (tree size {size1})")
    _require_match(sr, root2, f"consistency proof does not lead to the new root (tree size {size2})")


def _check_subtree(start: int, end: int) -> None:
    _check_size(start, "subtree start")
    _check_size(end, "subtree end")
    if not is_subtree(start, end):
        raise ProofError(
            f"[{start}, {end}) is not a subtree: start must be <= end and a multiple of "
            f"{_bit_ceil(max(end - start, 0))}"
        )


def verify_subtree_inclusion(
    leaf: bytes, index: int, start: int, end: int, proof: Sequence[bytes], subtree_root: bytes
) -> None:
    """MTC draft "Verifying a Subtree Inclusion Proof": leaf ``index`` is in ``[start, end)``.

    The proof is an RFC inclusion proof inside the subtree, so evaluation is RFC 9162 2.1.3.2
    with leaf index ``index - start`` and tree size ``end - start``.
    """
    _check_size(index, "leaf index")
    _check_subtree(start, end)
    _check_given_hash(subtree_root, "subtree hash")
    if not start <= index < end:
        raise ProofError(f"leaf index {index} is outside the subtree [{start}, {end})")
    _require_match(
        _evaluate_inclusion(leaf, index - start, end - start, proof),
        subtree_root,
        f"inclusion proof for leaf {index} does not lead to the hash of subtree [{start}, {end})",
    )


def verify_subtree_consistency(
    start: int, end: int, size: int, subtree_root: bytes, root: bytes, proof: Sequence[bytes]
) -> None:
    """MTC draft "Verifying a Subtree Consistency Proof": ``[start, end)`` is part of tree ``size``.

    With ``start == 0`` this accepts exactly what RFC 9162 consistency accepts, plus the
    trivial cases (equal sizes; an empty subtree, whose hash is ``EMPTY_ROOT``).
    """
    _check_size(size, "tree size")
    _check_given_hash(subtree_root, "subtree hash")
    _check_given_hash(root, "root hash")
    path = _check_proof(proof)
    # 1. [start, end) must be a valid subtree with end <= n.
    _check_subtree(start, end)
    if end > size:
        raise ProofError(f"subtree [{start}, {end}) ends beyond tree size {size}")
    # 2. An empty subtree: an empty proof and the empty hash.
    if start == end:
        if path:
            raise ProofError(f"an empty subtree needs an empty proof, got {len(path)} hashes")
        if subtree_root != EMPTY_ROOT:
            raise ProofError("an empty subtree's hash must be the empty root SHA-256()")
        return
    # The whole tree: what steps 3-9 reduce to, with the two given hashes compared as given.
    if start == 0 and end == size:
        if path:
            raise ProofError(f"the subtree is the whole tree ({size}) but the proof has {len(path)} hashes")
        if not _equal(subtree_root, root):
            raise ProofError(f"two different roots for tree size {size} (a fork)")
        return
    # 3. Set fn to start, sn to end - 1, tn to n - 1.
    fn, sn, tn = start, end - 1, size - 1
    if sn == tn:
        # 4. Until fn is sn, right-shift fn, sn and tn equally.
        while fn != sn:
            fn, sn, tn = fn >> 1, sn >> 1, tn >> 1
    else:
        # 5. Until fn is sn or LSB(sn) is not set, right-shift fn, sn and tn equally.
        while fn != sn and sn & 1:
            fn, sn, tn = fn >> 1, sn >> 1, tn >> 1
    if fn == sn:
        # 6. The subtree's root is a node of the tree: start from node_hash.
        fr = sr = subtree_root
    else:
        # 7. Otherwise the first proof hash is the subtree's rightmost perfect part.
        if not path:
            raise ProofError(f"empty proof for subtree [{start}, {end}) of tree size {size}")
        fr = sr = path.pop(0)
    # 8. For each value c in the proof:
    for c in path:
        # a. If tn is 0, stop and fail.
        if tn == 0:
            raise ProofError(
                f"subtree consistency proof for [{start}, {end}) in tree size {size} has too many "
                f"hashes ({len(proof)})"
            )
        # b. If LSB(sn) is set, or sn equals tn: c is a left sibling.
        if sn & 1 or sn == tn:
            # i. It is inside the subtree only while fn < sn.
            if fn < sn:
                fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            # iii. Until LSB(sn) is set, right-shift fn, sn and tn equally.
            while not sn & 1:
                fn, sn, tn = fn >> 1, sn >> 1, tn >> 1
        else:
            sr = node_hash(sr, c)
        # c. Right-shift fn, sn and tn once more.
        fn, sn, tn = fn >> 1, sn >> 1, tn >> 1
    # 9. tn must be 0, fr the subtree hash and sr the root hash.
    if tn != 0:
        raise ProofError(
            f"subtree consistency proof for [{start}, {end}) in tree size {size} has too few hashes ({len(proof)})"
        )
    _require_match(
        fr, subtree_root, f"subtree consistency proof does not lead to the hash of [{start}, {end})"
    )
    _require_match(sr, root, f"subtree consistency proof does not lead to the root of tree size {size}")
