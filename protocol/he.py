"""Similarity scores under CKKS encryption (Microsoft SEAL through ``tenseal.sealapi``).

The querying node owns the secret key; the answering node holds only the evaluation (Galois)
keys and its own watchlist, so it computes on a query it can never decrypt.

Layout. A d-dimensional unit embedding is packed as d/2 complex slots ``q[2k] + i q[2k+1]`` and
repeated across all N/2 slots. The watchlist is a matrix with one row per slot position (entries
at positions the node shuffles per build, random unit decoys elsewhere), stored as the pre-encoded generalised
diagonals of its complex conjugate, so ``Re(sum_k conj(e_k) q_k)`` is the inner product. The
diagonal method runs baby-step/giant-step: the baby-step rotations of the query are shared by
every ciphertext of N/2 rows, giant steps use Horner's rule, and adding the complex conjugate
keeps only the real part (the imaginary part is another linear function of the entry).

Gallery privacy. Raw scores would let a member rebuild the watchlist with basis-vector queries.
The answer is therefore ``r_j * 2 (s_j - t) + n_j``: the score's distance to the threshold ``t``,
scaled per slot and per query by a fresh log-uniform ``r_j`` and flooded with Gaussian noise
``n_j``. The querier learns the sign (match or not) and a magnitude blurred by a factor the
peer keeps to itself. With the norm check the answer is ``r_j * 4 (s_j^2 - t^2 |q|^2) + n_j``,
whose sign depends only on the query's direction, so a scaled (non-unit) query cannot turn the
sign into a finer threshold test. docs/private-mode.md has the leakage analysis.

Serialisation uses SEAL's own format through an anonymous in-memory file (``memfd``), so neither
keys nor ciphertexts touch a disk here.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import tenseal.sealapi as seal

from protocol.errors import ConfigurationError, MalformedError, OversizedError
from protocol.he_params import MAX_CIPHERTEXT_BYTES, MAX_KEY_BYTES, HEParameters, key_id_of

__all__ = [
    "BABY_STEPS",
    "EncryptedGallery",
    "HEContext",
    "MalformedCiphertext",
    "QueryKeys",
]

BABY_STEPS = (8, 16, 32, 64)
"""Giant-step sizes the evaluation keys cover; the peer picks the cheapest for its gallery."""

MASK_RANGE = (4.0, 64.0)
"""Bounds of the log-uniform per-slot mask ``r``; the low bound keeps the sign safe from encoding error."""

_SECURITY = {128: seal.SEC_LEVEL_TYPE.TC128, 192: seal.SEC_LEVEL_TYPE.TC192, 256: seal.SEC_LEVEL_TYPE.TC256}


class MalformedCiphertext(MalformedError):
    """A ciphertext or key that does not fit the group's parameters: refused before any work."""

    code = "malformed_ciphertext"


def _save(obj: Any) -> bytes:
    fd = os.memfd_create("watchnet-he", os.MFD_CLOEXEC)
    try:
        obj.save(f"/proc/self/fd/{fd}")
        size = os.fstat(fd).st_size
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while size > 0:
            chunk = os.read(fd, size)
            if not chunk:
                break
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _load(target: Any, context: seal.SEALContext, data: bytes, what: str) -> None:
    fd = os.memfd_create("watchnet-he", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        try:
            target.load(context, f"/proc/self/fd/{fd}")
        except (ValueError, RuntimeError, TypeError) as e:
            raise MalformedCiphertext(
                f"{what}: not a valid SEAL object for the group's parameters ({e})"
            ) from e
    finally:
        os.close(fd)


NORM_STEPS = (2, 4, 128)
"""With 1 and the giant steps, the rotations that sum a 256-slot block (for ``|q|^2``)."""


def rotation_steps(params: HEParameters) -> tuple[int, ...]:
    """The left rotations the evaluation keys cover: 1, every giant step, and the norm's steps."""
    return (1, *BABY_STEPS, *(NORM_STEPS if params.norm_check else ()))


def _rotation_elements(params: HEParameters) -> list[int]:
    """Galois elements for the covered rotations, plus complex conjugation."""
    m = 2 * params.ring_dimension
    return [pow(3, step, m) for step in rotation_steps(params)] + [m - 1]


def _decompose(step: int, steps: Sequence[int]) -> list[int]:
    """``step`` as a sum of covered rotations, largest first (1 is always covered)."""
    out = []
    for size in sorted(steps, reverse=True):
        while step >= size:
            out.append(size)
            step -= size
    return out


class HEContext:
    """SEAL objects for one parameter set: context, encoder, evaluator."""

    def __init__(self, params: HEParameters) -> None:
        self.params = params
        parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
        parms.set_poly_modulus_degree(params.ring_dimension)
        parms.set_coeff_modulus(
            seal.CoeffModulus.Create(params.ring_dimension, list(params.coeff_modulus_bits))
        )
        self.seal = seal.SEALContext(parms, True, _SECURITY[params.security_bits])
        if not self.seal.parameters_set():
            raise ConfigurationError(f"SEAL refused the parameters: {self.seal.parameters_error_message()}")
        self.encoder = seal.CKKSEncoder(self.seal)
        self.evaluator = seal.Evaluator(self.seal)
        self.query_scale = float(2**params.query_scale_bits)

    def pack(self, vector: npt.NDArray[np.floating[Any]]) -> list[complex]:
        """A unit embedding as d/2 complex slots, repeated to fill the ciphertext."""
        half = vector.shape[0] // 2
        if vector.shape[0] % 2 or half & (half - 1) or self.params.slots % half:
            raise MalformedError(
                f"embedding dimension {vector.shape[0]}: private mode needs 2 * a power of two "
                f"dividing {self.params.slots}"
            )
        v = vector.astype(np.float64)
        packed = v[0::2] + 1j * v[1::2]
        return list(np.tile(packed, self.params.slots // half))

    def galois_keys(self, data: bytes) -> seal.GaloisKeys:
        """Load a member's evaluation keys; refuse any that lack a rotation we use."""
        if len(data) > MAX_KEY_BYTES:
            raise OversizedError(f"evaluation keys: {len(data)} bytes, limit {MAX_KEY_BYTES}")
        keys = seal.GaloisKeys()
        _load(keys, self.seal, data, "evaluation keys")
        missing = [e for e in _rotation_elements(self.params) if not keys.has_key(e)]
        if missing:
            raise MalformedCiphertext(f"evaluation keys: no key for Galois elements {missing}")
        return keys

    def relin_keys(self, data: bytes) -> seal.RelinKeys | None:
        """A member's relinearisation keys: required exactly when the group runs the norm check."""
        if not self.params.norm_check:
            if data:
                raise MalformedCiphertext("relinearisation keys sent, but the group's parameters use none")
            return None
        if len(data) > MAX_KEY_BYTES:
            raise OversizedError(f"relinearisation keys: {len(data)} bytes, limit {MAX_KEY_BYTES}")
        keys = seal.RelinKeys()
        _load(keys, self.seal, data, "relinearisation keys")
        return keys

    def load_query(self, data: bytes) -> seal.Ciphertext:
        """An encrypted query, checked against the group's parameters before it is used."""
        if len(data) > MAX_CIPHERTEXT_BYTES:
            raise OversizedError(f"encrypted query: {len(data)} bytes, limit {MAX_CIPHERTEXT_BYTES}")
        ct = seal.Ciphertext()
        _load(ct, self.seal, data, "encrypted query")
        if ct.size() != 2 or not ct.is_ntt_form() or ct.parms_id() != self.seal.first_parms_id():
            raise MalformedCiphertext(
                "encrypted query: expected a fresh two-component ciphertext at the first level of the group's parameters"
            )
        if ct.scale != self.query_scale:
            raise MalformedCiphertext(
                f"encrypted query: scale 2^{math.log2(ct.scale):.2f}, the group uses 2^{self.params.query_scale_bits}"
            )
        return ct

    def load_partial(self, data: bytes) -> seal.Ciphertext:
        """A part computed by another share of this node's own gallery (not a peer's input)."""
        ct = seal.Ciphertext()
        _load(ct, self.seal, data, "share products")
        return ct

    def load_result(self, data: bytes) -> seal.Ciphertext:
        if len(data) > MAX_CIPHERTEXT_BYTES:
            raise OversizedError(f"encrypted scores: {len(data)} bytes, limit {MAX_CIPHERTEXT_BYTES}")
        ct = seal.Ciphertext()
        _load(ct, self.seal, data, "encrypted scores")
        if ct.size() != 2:
            raise MalformedCiphertext("encrypted scores: expected a two-component ciphertext")
        return ct

    def save(self, obj: Any) -> bytes:
        return _save(obj)


class QueryKeys:
    """The querier's key pair for one epoch: the secret key never leaves this object's node."""

    def __init__(
        self, context: HEContext, secret_key: seal.SecretKey, galois_keys: bytes, relin_keys: bytes = b""
    ) -> None:
        self.context = context
        self._secret = secret_key
        self.galois_keys = galois_keys
        self.relin_keys = relin_keys
        self.key_id = key_id_of(galois_keys, relin_keys)
        self._encryptor = seal.Encryptor(context.seal, secret_key)
        self._decryptor = seal.Decryptor(context.seal, secret_key)

    @classmethod
    def generate(cls, context: HEContext) -> QueryKeys:
        generator = seal.KeyGenerator(context.seal)
        galois = _save(generator.create_galois_keys(_rotation_elements(context.params)))
        relin = _save(generator.create_relin_keys()) if context.params.norm_check else b""
        return cls(context, generator.secret_key(), galois, relin)

    @classmethod
    def load(
        cls, context: HEContext, secret: bytes, galois_keys: bytes, relin_keys: bytes = b""
    ) -> QueryKeys:
        key = seal.SecretKey()
        _load(key, context.seal, secret, "secret key")
        return cls(context, key, galois_keys, relin_keys)

    def secret_bytes(self) -> bytes:
        """For the node's own key file only."""
        return _save(self._secret)

    def encrypt(self, vector: npt.NDArray[np.floating[Any]]) -> bytes:
        """A seeded symmetric encryption of the packed query (half the size of a public-key one)."""
        plain = seal.Plaintext()
        self.context.encoder.encode(self.context.pack(vector), self.context.query_scale, plain)
        return _save(self._encryptor.encrypt_symmetric(plain))

    def decrypt(self, results: Sequence[bytes]) -> npt.NDArray[np.complex128]:
        """The per-position values of an answer, in the peer's slot order."""
        out = []
        for data in results:
            ct = self.context.load_result(data)
            plain = seal.Plaintext()
            self._decryptor.decrypt(ct, plain)
            out.append(np.asarray(self.context.encoder.decode_complex(plain), dtype=np.complex128))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.complex128)


class EncryptedGallery:
    """A watchlist pre-encoded for encrypted inner products, at fixed slot positions.

    ``rows`` holds the unit embeddings; ``positions[i]`` is the slot position of row i among
    ``ciphertexts * slots`` positions (the caller shuffles). Every other position holds a random
    unit decoy (the same in every share of a build, from ``decoy_seed``): the diagonals stay dense (a sparse diagonal rounds away in encoding), the
    gallery's size shows only to the nearest ``slots``, and a decoy never reaches a threshold
    (its cosine with any face is about N(0, 1/d)).
    Memory: up to ``ciphertexts * d/2`` plaintexts of ``N * 8`` bytes per data prime; all-zero
    diagonals (a sparse gallery) are skipped, since SEAL refuses a product that would be
    transparent.
    """

    def __init__(
        self,
        context: HEContext,
        rows: npt.NDArray[np.float32],
        positions: npt.NDArray[np.int64],
        share: int = 0,
        shares: int = 1,
        decoy_seed: int | None = None,
    ) -> None:
        self.context = context
        params = context.params
        slots = params.slots
        count, dimension = rows.shape if rows.size else (0, 0)
        self.ciphertexts = max(1, -(-count // slots)) if count else 0
        if count and (positions.shape != (count,) or positions.max() >= self.ciphertexts * slots):
            raise ValueError("positions must place every row inside the gallery's slots")
        if not 0 <= share < shares:
            raise ValueError(f"share {share} of {shares}")
        self.half = dimension // 2
        self.steps = rotation_steps(params)
        self.baby = self._choose_baby(self.half, self.ciphertexts, shares, self.steps) if count else shares
        self.share = share
        self.shares = shares
        width = self.baby // shares
        self.babies = range(share * width, (share + 1) * width)
        """The baby steps this share multiplies: its diagonals are ``g * baby + b`` for ``b`` in here."""
        entry_scale = float(2**params.entry_scale_bits)
        self._diagonals: list[list[seal.Plaintext | None]] = []
        self.memory_bytes = 0
        if not count:
            return
        total = self.ciphertexts * slots
        decoys = np.random.default_rng(secrets.randbits(128) if decoy_seed is None else decoy_seed).normal(
            size=(total, dimension)
        )
        decoys /= np.linalg.norm(decoys, axis=1, keepdims=True)
        decoys[positions] = rows.astype(np.float64)
        packed = np.conj(decoys[:, 0::2] + 1j * decoys[:, 1::2])
        del decoys
        j = np.arange(slots)[:, None]
        shift = (j + np.arange(self.half)[None, :]) % self.half
        for c in range(self.ciphertexts):
            block = packed[c * slots : (c + 1) * slots]
            diagonals = block[j, shift]
            plains: list[seal.Plaintext | None] = []
            for i in range(self.half):
                if i % self.baby not in self.babies or not diagonals[:, i].any():
                    plains.append(None)
                    continue
                giant = (i // self.baby) * self.baby
                plain = seal.Plaintext()
                context.encoder.encode(list(np.roll(diagonals[:, i], giant)), entry_scale, plain)
                if plain.is_zero():
                    plains.append(None)
                    continue
                plains.append(plain)
                self.memory_bytes += params.ring_dimension * 8 * (len(params.coeff_modulus_bits) - 1)
            self._diagonals.append(plains)

    @staticmethod
    def _choose_baby(half: int, ciphertexts: int, shares: int, steps: Sequence[int]) -> int:
        """The giant step that makes one share's rotations fewest: its own baby steps (the first
        reached by whole rotations) and the giant steps of every ciphertext."""
        choices = [b for b in BABY_STEPS if b <= half and half % b == 0 and b % shares == 0]
        if not choices:
            if shares != 1:
                raise ValueError(f"{shares} shares cannot split the baby steps of a {2 * half}-d gallery")
            choices = [1]

        def rotations(b: int) -> int:
            width = b // shares
            first = max(len(_decompose(s * width, steps)) for s in range(shares))
            return first + (width - 1) + max(1, ciphertexts) * (half // b - 1)

        return min(choices, key=rotations)

    def _rotate(self, ct: seal.Ciphertext, step: int, keys: seal.GaloisKeys) -> seal.Ciphertext:
        """``ct`` rotated left by ``step``, as a sum of the rotations the keys cover."""
        out = ct
        for part in _decompose(step, self.steps):
            rotated = seal.Ciphertext()
            self.context.evaluator.rotate_vector(out, part, keys, rotated)
            out = rotated
        return out

    def inner_products(self, query: seal.Ciphertext, keys: seal.GaloisKeys) -> list[seal.Ciphertext]:
        """Encrypted ``2 <q, e>`` for every slot position (real; zero where no entry sits).
        Only a gallery of one share has them all; see ``share_products``."""
        return [self.conjugate_sum(ct, keys) for ct in self.share_products(query, keys)]

    def conjugate_sum(self, ct: seal.Ciphertext, keys: seal.GaloisKeys) -> seal.Ciphertext:
        """``ct + conj(ct)``: twice the real part, which is where the inner product sits."""
        conjugate = seal.Ciphertext()
        self.context.evaluator.complex_conjugate(ct, keys, conjugate)
        self.context.evaluator.add_inplace(ct, conjugate)
        return ct

    def share_products(self, query: seal.Ciphertext, keys: seal.GaloisKeys) -> list[seal.Ciphertext]:
        """This share's part of ``<q, conj(e)>`` per ciphertext: the products of its baby steps,
        through the giant steps of Horner's rule. The product is linear, so the parts of all
        shares add up to the whole; each share runs in its own process, on its own core."""
        ev = self.context.evaluator
        baby = {self.babies.start: self._rotate(query, self.babies.start, keys)}
        for b in self.babies[1:]:
            rotated = seal.Ciphertext()
            ev.rotate_vector(baby[b - 1], 1, keys, rotated)
            baby[b] = rotated
        giants = self.half // self.baby
        out = []
        for plains in self._diagonals:
            acc: seal.Ciphertext | None = None
            for g in reversed(range(giants)):
                part: seal.Ciphertext | None = None
                for b in self.babies:
                    plain = plains[g * self.baby + b]
                    if plain is None:
                        continue
                    term = seal.Ciphertext()
                    ev.multiply_plain(baby[b], plain, term)
                    if part is None:
                        part = term
                    else:
                        ev.add_inplace(part, term)
                if acc is not None:
                    ev.rotate_vector_inplace(acc, self.baby, keys)
                    if part is not None:
                        ev.add_inplace(part, acc)
                    else:
                        part = acc
                acc = part
            assert acc is not None, "every share of a gallery ciphertext holds an entry"
            out.append(acc)
        return out

    def query_norm(
        self, query: seal.Ciphertext, keys: seal.GaloisKeys, relin: seal.RelinKeys
    ) -> seal.Ciphertext:
        """Encrypted ``|q|^2`` in every slot: ``q * conj(q)`` summed over one period of the packing."""
        ev = self.context.evaluator
        conjugate = seal.Ciphertext()
        ev.complex_conjugate(query, keys, conjugate)
        norm = seal.Ciphertext()
        ev.multiply(query, conjugate, norm)
        ev.relinearize_inplace(norm, relin)
        step = 1
        while step < self.half:
            rotated = seal.Ciphertext()
            ev.rotate_vector(norm, step, keys, rotated)
            ev.add_inplace(norm, rotated)
            step *= 2
        return norm

    def masked_scores(
        self,
        query: seal.Ciphertext,
        keys: seal.GaloisKeys,
        threshold: float,
        rng: np.random.Generator,
        relin: seal.RelinKeys | None = None,
    ) -> list[bytes]:
        """The answer of a gallery held in one share: see ``finish``."""
        if self.shares != 1:
            raise ValueError("a gallery in shares answers through share_products and finish")
        norm = self.query_norm(query, keys, relin) if self.context.params.norm_check and relin else None
        return self.finish(self.share_products(query, keys), norm, keys, threshold, rng, relin)

    def finish(
        self,
        products: list[seal.Ciphertext],
        norm: seal.Ciphertext | None,
        keys: seal.GaloisKeys,
        threshold: float,
        rng: np.random.Generator,
        relin: seal.RelinKeys | None = None,
    ) -> list[bytes]:
        """Per slot position, ``r * 2 (s - t) + n``, or with the norm check ``r * 4 (s^2 - t^2 |q|^2) + n``:
        the sign says match, the magnitude is blurred by ``r``. ``products`` are the shares' parts
        summed, per ciphertext; ``norm`` is ``query_norm`` of the query (norm check only). Before
        the noise goes in, the answer drops to the last data prime (half the bytes with the norm
        check); the values need no more."""
        ctx = self.context
        ev = ctx.evaluator
        slots = ctx.params.slots
        if ctx.params.norm_check and (relin is None or norm is None):
            raise MalformedCiphertext("the group's norm check needs the member's relinearisation keys")
        bound = None
        out = []
        for ct in products:
            self.conjugate_sum(ct, keys)
            if norm is None:
                offset = seal.Plaintext()
                ctx.encoder.encode(-2.0 * threshold, ct.parms_id(), ct.scale, offset)
                ev.add_plain_inplace(ct, offset)
            else:
                ev.square_inplace(ct)
                ev.relinearize_inplace(ct, relin)
                if bound is None:
                    bound = seal.Plaintext()
                    ctx.encoder.encode(4.0 * threshold**2, norm.parms_id(), ct.scale / norm.scale, bound)
                    limit = seal.Ciphertext()
                    ev.multiply_plain(norm, bound, limit)
                ev.sub_inplace(ct, limit)
            mask = np.exp(rng.uniform(math.log(MASK_RANGE[0]), math.log(MASK_RANGE[1]), slots))
            mask_plain = seal.Plaintext()
            ctx.encoder.encode(list(mask), ct.parms_id(), float(2**ctx.params.mask_scale_bits), mask_plain)
            ev.multiply_plain_inplace(ct, mask_plain)
            if ct.parms_id() != ctx.seal.last_parms_id():
                ev.rescale_to_next_inplace(ct)
            noise = rng.normal(0.0, ctx.params.noise, slots) + 1j * rng.normal(0.0, ctx.params.noise, slots)
            noise_plain = seal.Plaintext()
            ctx.encoder.encode(list(noise), ct.parms_id(), ct.scale, noise_plain)
            ev.add_plain_inplace(ct, noise_plain)
            out.append(_save(ct))
        return out
