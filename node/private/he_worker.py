"""Homomorphic work in a worker process: the pre-encoded gallery and loaded keys live here.

CKKS evaluation holds a core for tens of milliseconds; running it here keeps the node's event
loop answering. The functions are called through a single-process executor per worker, so the
module-level state below is that worker's own.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np

from protocol.errors import PolicyError
from protocol.he import EncryptedGallery, HEContext
from protocol.he_params import HEParameters

__all__ = [
    "GalleryGone",
    "MissingKey",
    "evaluate",
    "exit_with_parent",
    "finish_shares",
    "load_gallery",
    "share_products",
]

MAX_LOADED_KEYS = 32
PARENT_CHECK_SECONDS = 1.0


class MissingKey(PolicyError):
    """This worker has not loaded the named evaluation keys yet: send their bytes."""

    code = "eval_key_not_loaded"


class GalleryGone(PolicyError):
    code = "gallery_rebuilt"


_state: dict[str, Any] = {"context": None, "builds": OrderedDict(), "keys": OrderedDict()}


def exit_with_parent(parent: int) -> None:
    """The worker process's initializer: exit once the node process ``parent`` is gone. A node
    killed outright (SIGKILL, the OOM killer) cannot shut its pool down, and the orphan would
    keep the gallery's memory (100-200 MB) until someone noticed it."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="watchnet-parent-watch", daemon=True).start()


def _context(params: dict[str, Any]) -> HEContext:
    wanted = HEParameters.from_dict(params)
    context: HEContext | None = _state["context"]
    if context is None or context.params != wanted:
        context = HEContext(wanted)
        _state.update(context=context, builds=OrderedDict(), keys=OrderedDict())
    return context


def load_gallery(
    params: dict[str, Any],
    build_id: str,
    rows: bytes,
    dimension: int,
    positions: bytes,
    share: int = 0,
    shares: int = 1,
    decoy_seed: int | None = None,
) -> int:
    """Pre-encode this worker's share of a gallery build; the previous build stays for reveals in
    flight. Returns its bytes."""
    context = _context(params)
    matrix = (
        np.frombuffer(rows, dtype="<f4").reshape(-1, dimension) if rows else np.zeros((0, dimension), "<f4")
    )
    gallery = EncryptedGallery(
        context, matrix, np.frombuffer(positions, dtype="<i8"), share, shares, decoy_seed
    )
    builds: OrderedDict[str, EncryptedGallery] = _state["builds"]
    builds[build_id] = gallery
    while len(builds) > 1:
        builds.popitem(last=False)
    return gallery.memory_bytes


def _prepare(
    params: dict[str, Any], build_id: str, key_id: str, key_bytes: tuple[bytes, bytes] | None
) -> tuple[HEContext, EncryptedGallery, Any, Any]:
    context = _context(params)
    gallery: EncryptedGallery | None = _state["builds"].get(build_id)
    if gallery is None:
        raise GalleryGone(f"gallery build {build_id} is no longer loaded; ask again")
    keys: OrderedDict[str, Any] = _state["keys"]
    loaded = keys.get(key_id)
    if loaded is None:
        if key_bytes is None:
            raise MissingKey(key_id)
        loaded = (context.galois_keys(key_bytes[0]), context.relin_keys(key_bytes[1]))
        keys[key_id] = loaded
        while len(keys) > MAX_LOADED_KEYS:
            keys.popitem(last=False)
    keys.move_to_end(key_id)
    return context, gallery, loaded[0], loaded[1]


def share_products(
    params: dict[str, Any],
    build_id: str,
    key_id: str,
    key_bytes: tuple[bytes, bytes] | None,
    ciphertexts: list[bytes],
) -> list[list[bytes]]:
    """This worker's part of every query's products, in a gallery of several shares: per query,
    one ciphertext per gallery ciphertext, and with the norm check the last share adds the
    query's ``|q|^2`` (computed beside the products rather than after them)."""
    context, gallery, galois, relin = _prepare(params, build_id, key_id, key_bytes)
    out = []
    for data in ciphertexts:
        query = context.load_query(data)
        parts = [context.save(ct) for ct in gallery.share_products(query, galois)]
        if context.params.norm_check and gallery.share == gallery.shares - 1:
            parts.append(context.save(gallery.query_norm(query, galois, relin)))
        out.append(parts)
    return out


def evaluate(
    params: dict[str, Any],
    build_id: str,
    key_id: str,
    key_bytes: tuple[bytes, bytes] | None,
    ciphertexts: list[bytes],
    threshold: float,
    seed: int,
) -> list[list[bytes]]:
    """Masked encrypted scores of every query against a build held whole in this worker;
    validates each ciphertext first."""
    context, gallery, galois, relin = _prepare(params, build_id, key_id, key_bytes)
    queries = [context.load_query(c) for c in ciphertexts]
    rng = np.random.default_rng(seed)
    return [gallery.masked_scores(q, galois, threshold, rng, relin) for q in queries]


def finish_shares(
    params: dict[str, Any],
    build_id: str,
    key_id: str,
    key_bytes: tuple[bytes, bytes] | None,
    parts: list[list[list[bytes]]],
    norms: list[bytes | None],
    threshold: float,
    seed: int,
) -> list[list[bytes]]:
    """The answers for some of the gallery's ciphertexts, from every share's ``share_products``:
    ``parts[query][i]`` holds each share's part of this worker's i-th ciphertext, ``norms[query]``
    the query's ``|q|^2`` (norm check only). Each worker finishes its own ciphertexts, so the
    masking is split too."""
    context, gallery, galois, relin = _prepare(params, build_id, key_id, key_bytes)
    rng = np.random.default_rng(seed)
    out = []
    for query_parts, norm in zip(parts, norms, strict=True):
        sums = []
        for shares in query_parts:
            total = context.load_partial(shares[0])
            for more in shares[1:]:
                context.evaluator.add_inplace(total, context.load_partial(more))
            sums.append(total)
        out.append(
            gallery.finish(
                sums, None if norm is None else context.load_partial(norm), galois, threshold, rng, relin
            )
        )
    return out
