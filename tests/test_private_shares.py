"""A private-mode gallery split over HE processes (``[federation] he_processes``), through the
node's own ``PrivateMatcher``: the answer for every gallery ciphertext lands in its place."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import numpy as np

from node.private.matcher import PrivateMatcher
from protocol.he import HEContext, QueryKeys
from protocol.he_params import HEParameters

NORM = HEParameters(coeff_modulus_bits=(60, 60, 60), norm_check=True)
THRESHOLD = 0.45


class Watchlist:
    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows

    def snapshot(self) -> tuple[list[str], np.ndarray]:
        return [f"ent-{i}" for i in range(len(self.rows))], self.rows


def answers(rows: np.ndarray, faces: list[int], processes: int, keys: QueryKeys) -> list[set[str]]:
    """The entries each face's round-1 answer names (positive slots), from ``processes`` processes."""

    async def run() -> list[set[str]]:
        matcher = PrivateMatcher(Watchlist(rows), reshuffle=timedelta(hours=1), processes=processes)  # type: ignore[arg-type]
        try:
            await matcher.refresh(NORM)
            build, results = await matcher.evaluate(
                "chain-b",
                "qry-1",
                keys.key_id,
                (keys.galois_keys, keys.relin_keys),
                [keys.encrypt(rows[f]) for f in faces],
                THRESHOLD,
                NORM,
            )
            assert build.ciphertexts == 2
            named = []
            for answer in results:
                assert len(answer) == build.ciphertexts
                values = keys.decrypt(answer).real
                named.append({build.keys[p] for p in np.flatnonzero(values > 0) if p in build.keys})
            return named
        finally:
            await matcher.close()

    return asyncio.run(run())


def test_every_ciphertexts_answer_lands_in_its_place_whatever_the_process_count() -> None:
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((5000, 512)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    keys = QueryKeys.generate(HEContext(NORM))
    faces = list(range(0, 5000, 420))  # twelve: the build's shuffle puts some in both ciphertexts
    expected = [{f"ent-{f}"} for f in faces]
    assert answers(rows, faces, 1, keys) == expected
    assert answers(rows, faces, 2, keys) == expected
