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

__all__ = ["GalleryGone", "MissingKey", "evaluate", "exit_with_parent", "load_gallery"]

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


def load_gallery(params: dict[str, Any], build_id: str, rows: bytes, dimension: int, positions: bytes) -> int:
    """Pre-encode a gallery build; the previous build stays for reveals in flight. Returns its bytes."""
    context = _context(params)
    matrix = (
        np.frombuffer(rows, dtype="<f4").reshape(-1, dimension) if rows else np.zeros((0, dimension), "<f4")
    )
    gallery = EncryptedGallery(context, matrix, np.frombuffer(positions, dtype="<i8"))
    builds: OrderedDict[str, EncryptedGallery] = _state["builds"]
    builds[build_id] = gallery
    while len(builds) > 1:
        builds.popitem(last=False)
    return gallery.memory_bytes


def evaluate(
    params: dict[str, Any],
    build_id: str,
    key_id: str,
    key_bytes: tuple[bytes, bytes] | None,
    ciphertexts: list[bytes],
    threshold: float,
    seed: int,
) -> list[list[bytes]]:
    """Masked encrypted scores of every query against the build; validates each ciphertext first."""
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
    queries = [context.load_query(c) for c in ciphertexts]
    rng = np.random.default_rng(seed)
    galois, relin = loaded
    return [gallery.masked_scores(q, galois, threshold, rng, relin) for q in queries]
