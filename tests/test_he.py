"""CKKS scoring (protocol/he.py) on real face embeddings from the shipped model: accuracy, masking,
and the refusal of anything that does not fit the group's parameters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.demo.story import photo_path
from node.face.models import ModelPack
from node.face.pipeline import FacePipeline, decode_image
from node.private.matcher import spread_positions
from protocol.errors import ConfigurationError, MalformedError, OversizedError
from protocol.he import (
    MASK_RANGE,
    EncryptedGallery,
    HEContext,
    HEParameters,
    MalformedCiphertext,
    QueryKeys,
)

SCORE_ERROR = 3e-3
"""Stated bound on |decrypted score - plaintext score| (measured max 2.7e-3 over 30k scores at 10k entries)."""

SMALL = HEParameters(
    ring_dimension=4096,
    coeff_modulus_bits=(54, 55),
    query_scale_bits=24,
    entry_scale_bits=14,
    mask_scale_bits=7,
)
"""Another valid parameter set (ring dimension 4096): what a member of another group would use."""


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """Every face the model finds in insightface's sample photos, as unit float32 rows."""
    pipeline = FacePipeline(ModelPack.locate())
    rows = []
    for name in ("t1.jpg", "players.jpg", "yaoming.jpg"):
        detected = pipeline.detect(decode_image(photo_path(name).read_bytes()))
        rows += [pipeline.embed_crop(face.crop).vector for face in detected]
    return np.vstack(rows).astype(np.float32)


@pytest.fixture(scope="module")
def context() -> HEContext:
    return HEContext(HEParameters())


@pytest.fixture(scope="module")
def keys(context: HEContext) -> QueryKeys:
    return QueryKeys.generate(context)


def gallery(context: HEContext, rows: np.ndarray, seed: int = 0) -> tuple[EncryptedGallery, np.ndarray]:
    positions = spread_positions(len(rows), context.params.slots, np.random.default_rng(seed))
    return EncryptedGallery(context, rows, positions), positions


def test_decrypted_scores_equal_plaintext_scores_on_real_faces(
    context: HEContext, keys: QueryKeys, faces: np.ndarray
) -> None:
    assert len(faces) >= 20
    g, positions = gallery(context, faces[1:])
    galois = context.galois_keys(keys.galois_keys)
    for probe in faces[:4]:
        encrypted = context.load_query(keys.encrypt(probe))
        values = keys.decrypt([context.save(c) for c in g.inner_products(encrypted, galois)])
        plain = faces[1:].astype(np.float64) @ probe.astype(np.float64)
        assert np.abs(values.real[positions] / 2 - plain).max() < SCORE_ERROR
        assert np.abs(values.imag).max() < 1e-4, "the conjugate removes the imaginary part"


def test_masked_answer_reveals_the_match_and_nothing_else(
    context: HEContext, keys: QueryKeys, faces: np.ndarray
) -> None:
    """Real faces: yaoming's photo against the players.jpg gallery, at the demo threshold 0.45."""
    threshold = 0.45
    g, positions = gallery(context, faces)
    galois = context.galois_keys(keys.galois_keys)
    rng = np.random.default_rng(7)
    probe = faces[-1]
    answer = keys.decrypt(g.masked_scores(context.load_query(keys.encrypt(probe)), galois, threshold, rng))
    plain = faces.astype(np.float64) @ probe.astype(np.float64)
    clear = np.abs(plain - threshold) > 0.01
    assert np.array_equal((answer.real[positions] > 0)[clear], (plain >= threshold)[clear])
    assert (answer.real[positions] > 0).sum() >= 1
    decoys = np.setdiff1d(np.arange(len(answer)), positions)
    assert (answer.real[decoys] < 0).all(), "a decoy never reaches the threshold"
    ratio = answer.real[positions] / (2 * (plain - threshold))
    assert (ratio[clear] > MASK_RANGE[0] * 0.9).all() and (ratio[clear] < MASK_RANGE[1] * 1.1).all()
    again = keys.decrypt(g.masked_scores(context.load_query(keys.encrypt(probe)), galois, threshold, rng))
    assert not np.allclose(again.real[positions], answer.real[positions], rtol=0.05), "a fresh mask per query"


def test_garbage_and_foreign_ciphertexts_are_refused(
    context: HEContext, keys: QueryKeys, faces: np.ndarray
) -> None:
    good = keys.encrypt(faces[0])
    with pytest.raises(MalformedCiphertext):
        context.load_query(b"\x00" * 200)
    with pytest.raises(MalformedCiphertext):
        context.load_query(good[: len(good) // 2])
    with pytest.raises(OversizedError):
        context.load_query(b"\x00" * (2 << 20))
    other = HEContext(HEParameters(query_scale_bits=27, entry_scale_bits=17))
    with pytest.raises(MalformedCiphertext, match="scale"):
        context.load_query(QueryKeys.generate(other).encrypt(faces[0]))
    small = HEContext(SMALL)
    with pytest.raises(MalformedCiphertext):
        context.load_query(QueryKeys.generate(small).encrypt(faces[0]))


def test_evaluation_keys_for_other_parameters_are_refused(context: HEContext) -> None:
    small = HEContext(SMALL)
    with pytest.raises(MalformedCiphertext):
        context.galois_keys(QueryKeys.generate(small).galois_keys)
    with pytest.raises(MalformedCiphertext):
        context.galois_keys(b"not keys at all")


def test_a_decryptor_needs_the_querier_secret_key(
    context: HEContext, keys: QueryKeys, faces: np.ndarray
) -> None:
    """Someone else's key pair (what a peer could make) decrypts our query to noise."""
    g, positions = gallery(context, faces[:5])
    galois = context.galois_keys(keys.galois_keys)
    result = [context.save(c) for c in g.inner_products(context.load_query(keys.encrypt(faces[0])), galois)]
    stranger = QueryKeys.generate(context).decrypt(result)
    assert np.abs(stranger.real[positions] / 2 - faces[:5] @ faces[0]).max() > 0.5


def test_parameters_below_128_bit_security_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="security"):
        HEParameters(ring_dimension=4096, coeff_modulus_bits=(60, 60))
    with pytest.raises(ConfigurationError, match="special"):
        HEParameters(coeff_modulus_bits=(60, 50))
    with pytest.raises(ConfigurationError, match="scale"):
        HEParameters(query_scale_bits=40, entry_scale_bits=20)
    params = HEParameters()
    assert HEParameters.from_dict(params.to_dict()) == params


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "scheme",
                "ring_dimension",
                "coeff_modulus_bits",
                "query_scale_bits",
                "entry_scale_bits",
                "mask_scale_bits",
                "noise",
                "security_bits",
                "extra",
            ]
        ),
        st.one_of(
            st.integers(-5, 70000),
            st.text(max_size=5),
            st.lists(st.integers(0, 70), max_size=4),
            st.floats(allow_nan=True),
            st.none(),
        ),
    )
)
def test_parameter_parser_fails_only_with_malformed(data: dict) -> None:
    base = HEParameters().to_dict()
    base.update(data)
    try:
        parsed = HEParameters.from_dict(base)
    except MalformedError:
        return
    assert HEParameters.from_dict(parsed.to_dict()) == parsed


NORM = HEParameters(coeff_modulus_bits=(60, 60, 60), norm_check=True)


@pytest.fixture(scope="module")
def norm_context() -> HEContext:
    return HEContext(NORM)


@pytest.fixture(scope="module")
def norm_keys(norm_context: HEContext) -> QueryKeys:
    return QueryKeys.generate(norm_context)


def assert_norm_check_signs(
    answer: np.ndarray, positions: np.ndarray, faces: np.ndarray, probe: np.ndarray, threshold: float
) -> None:
    """Positive exactly where ``|cos| >= t`` (away from the threshold), and at least one match."""
    plain = faces.astype(np.float64) @ probe.astype(np.float64)
    clear = np.abs(plain - threshold) > 0.01
    assert np.array_equal((answer.real[positions] > 0)[clear], (np.abs(plain) >= threshold)[clear])
    assert (answer.real[positions] > 0).sum() >= 1


def test_norm_check_answers_the_match_on_real_faces(
    norm_context: HEContext, norm_keys: QueryKeys, faces: np.ndarray
) -> None:
    threshold = 0.45
    g, positions = gallery(norm_context, faces)
    galois = norm_context.galois_keys(norm_keys.galois_keys)
    relin = norm_context.relin_keys(norm_keys.relin_keys)
    probe = faces[-1]
    answer = norm_keys.decrypt(
        g.masked_scores(
            norm_context.load_query(norm_keys.encrypt(probe)),
            galois,
            threshold,
            np.random.default_rng(3),
            relin,
        )
    )
    assert_norm_check_signs(answer, positions, faces, probe, threshold)


def test_scaling_a_query_defeats_the_sign_only_but_not_the_norm_check(
    context: HEContext, keys: QueryKeys, norm_context: HEContext, norm_keys: QueryKeys, faces: np.ndarray
) -> None:
    """The threshold-search attack: ``c * e_k`` tests ``E[k] > t / c``. Without the norm check it
    finds entries; with it, the answer depends only on the query's direction, and no basis
    direction is near a face."""
    threshold, scale = 0.45, 20.0
    probe = np.zeros(faces.shape[1])
    probe[7] = scale
    expected = (faces[:, 7] * scale > threshold).sum()
    assert expected > 0
    rng = np.random.default_rng(5)
    g, positions = gallery(context, faces)
    weak = keys.decrypt(
        g.masked_scores(
            context.load_query(keys.encrypt(probe)), context.galois_keys(keys.galois_keys), threshold, rng
        )
    )
    assert (weak.real[positions] > 0).sum() == expected, "the sign-only answer leaks E[7] > t / c"
    h, _ = gallery(norm_context, faces)
    strong = norm_keys.decrypt(
        h.masked_scores(
            norm_context.load_query(norm_keys.encrypt(probe)),
            norm_context.galois_keys(norm_keys.galois_keys),
            threshold,
            rng,
            norm_context.relin_keys(norm_keys.relin_keys),
        )
    )
    assert (strong.real > 0).sum() == 0, "with the norm check a scaled basis vector matches nothing"


def test_the_norm_check_needs_relinearisation_keys_and_only_then(
    context: HEContext, norm_context: HEContext, norm_keys: QueryKeys, faces: np.ndarray
) -> None:
    g, _ = gallery(norm_context, faces[:3])
    query = norm_context.load_query(norm_keys.encrypt(faces[0]))
    with pytest.raises(MalformedCiphertext, match="relinearisation"):
        g.masked_scores(
            query, norm_context.galois_keys(norm_keys.galois_keys), 0.45, np.random.default_rng(1)
        )
    with pytest.raises(MalformedCiphertext):
        context.relin_keys(norm_keys.relin_keys)
    with pytest.raises(MalformedCiphertext):
        norm_context.relin_keys(b"\x00" * 64)
    with pytest.raises(MalformedCiphertext, match="Galois"):
        norm_context.galois_keys(
            QueryKeys.generate(HEContext(HEParameters(coeff_modulus_bits=(60, 60, 60)))).galois_keys
        )


def test_the_pure_parameter_limits_are_seals_own() -> None:
    """Manifests are checked without loading SEAL; the table they use must be SEAL's."""
    import tenseal.sealapi as seal

    from protocol.he_params import MAX_COEFF_MODULUS_BITS

    levels = {128: seal.SEC_LEVEL_TYPE.TC128, 192: seal.SEC_LEVEL_TYPE.TC192, 256: seal.SEC_LEVEL_TYPE.TC256}
    for bits, level in levels.items():
        for n, limit in MAX_COEFF_MODULUS_BITS[bits].items():
            assert seal.CoeffModulus.MaxBitCount(n, level) == limit, (bits, n)


def shared(context: HEContext, rows: np.ndarray, shares: int, seed: int = 0) -> list[EncryptedGallery]:
    """The gallery of ``gallery(context, rows, seed)`` in ``shares`` parts, as the HE processes hold it."""
    positions = spread_positions(len(rows), context.params.slots, np.random.default_rng(seed))
    return [
        EncryptedGallery(context, rows, positions, share, shares, decoy_seed=11) for share in range(shares)
    ]


def summed(context: HEContext, parts: list[EncryptedGallery], query, galois) -> list:  # type: ignore[no-untyped-def]
    totals = parts[0].share_products(query, galois)
    for part in parts[1:]:
        for total, more in zip(totals, part.share_products(query, galois), strict=True):
            context.evaluator.add_inplace(total, more)
    return totals


@pytest.mark.parametrize("shares", [2, 4])
def test_a_gallery_in_shares_sums_to_the_whole_gallery(
    context: HEContext, keys: QueryKeys, faces: np.ndarray, shares: int
) -> None:
    """Each share holds only its baby steps' diagonals (memory split, not copied), and the parts
    add up to the one-process inner products, decoys included."""
    rows = np.vstack([faces] * 400)[:9000]  # three gallery ciphertexts: the giant steps run too
    positions = spread_positions(len(rows), context.params.slots, np.random.default_rng(0))
    whole = EncryptedGallery(context, rows, positions, decoy_seed=11)
    parts = shared(context, rows, shares)
    assert sum(p.memory_bytes for p in parts) == whole.memory_bytes
    assert {b for p in parts for b in p.babies} == set(range(parts[0].baby))
    galois = context.galois_keys(keys.galois_keys)
    query = context.load_query(keys.encrypt(faces[3]))
    alone = keys.decrypt([context.save(c) for c in whole.inner_products(query, galois)])
    together = keys.decrypt(
        [context.save(parts[0].conjugate_sum(c, galois)) for c in summed(context, parts, query, galois)]
    )
    plain = rows.astype(np.float64) @ faces[3].astype(np.float64)
    assert np.abs(together.real[positions] / 2 - plain).max() < 2 * SCORE_ERROR, "the rotations' noise, no more"
    assert np.abs(together.real - alone.real).max() / 2 < 2 * SCORE_ERROR, "decoys included"
    assert np.abs(together.imag).max() < 1e-4


def test_a_gallery_in_shares_answers_the_norm_check_like_one(
    norm_context: HEContext, norm_keys: QueryKeys, faces: np.ndarray
) -> None:
    threshold = 0.45
    parts = shared(norm_context, faces, 2)
    positions = spread_positions(len(faces), norm_context.params.slots, np.random.default_rng(0))
    galois = norm_context.galois_keys(norm_keys.galois_keys)
    relin = norm_context.relin_keys(norm_keys.relin_keys)
    probe = faces[-1]
    query = norm_context.load_query(norm_keys.encrypt(probe))
    norm = parts[1].query_norm(query, galois, relin)
    answer = norm_keys.decrypt(
        parts[0].finish(
            summed(norm_context, parts, query, galois),
            norm,
            galois,
            threshold,
            np.random.default_rng(3),
            relin,
        )
    )
    assert_norm_check_signs(answer, positions, faces, probe, threshold)
    with pytest.raises(ValueError, match="share"):
        parts[0].masked_scores(query, galois, threshold, np.random.default_rng(3), relin)
