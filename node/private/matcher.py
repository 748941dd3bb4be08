"""The answering side of private mode: a shuffled, pre-encoded gallery in worker processes.

Each build places the active entries at random slot positions (a fresh permutation per build,
and builds are redone when entries change and at least every ``gallery_reshuffle``), so
positions mean nothing across builds. The main process keeps only position -> entry id for the
current and previous build (for reveals in flight); the pre-encoded plaintexts live in the
workers. A bounded number of HE jobs may wait; beyond that a query is refused as ``busy`` so
the node keeps answering everything else.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import secrets
import time
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from node.private import he_worker
from node.records.matching import MatchIndex
from protocol.errors import PolicyError
from protocol.he_params import HEParameters

__all__ = [
    "NOT_READY_WAIT",
    "GalleryBuild",
    "GalleryNotReady",
    "HEBusy",
    "PrivateMatcher",
    "UnknownPrivateQuery",
]

LOG = logging.getLogger("watchnet.private")

REMEMBERED_QUERIES = 4096
QUERY_MEMORY = timedelta(minutes=2)


class HEBusy(PolicyError):
    """Too many homomorphic jobs waiting: try again shortly."""

    code = "busy"


class GalleryNotReady(PolicyError):
    """No gallery holding the current entries yet (the first build, or a rebuild after a change,
    takes longer than ``NOT_READY_WAIT``): the querier reports this peer as not answered, never
    as "no match", and asks again; the build goes on meanwhile."""

    code = "not_ready"


NOT_READY_WAIT = 2.0
"""Seconds round 1 waits for a gallery build before answering ``not_ready``."""


class UnknownPrivateQuery(PolicyError):
    """A reveal must follow a round-1 query of the same member, against the same build."""

    code = "unknown_private_query"


@dataclass(frozen=True)
class GalleryBuild:
    build_id: str
    params: HEParameters
    keys: dict[int, str]
    """Slot position -> entry id."""
    ciphertexts: int
    built_at: float


def spread_positions(count: int, slots: int, rng: np.random.Generator) -> np.ndarray:
    """Random distinct slot positions for ``count`` rows, every ciphertext of ``slots`` holding some."""
    if not count:
        return np.zeros(0, dtype=np.int64)
    ciphertexts = -(-count // slots)
    chunks = np.array_split(np.arange(count), ciphertexts)
    return np.concatenate(
        [c * slots + rng.choice(slots, size=len(chunk), replace=False) for c, chunk in enumerate(chunks)]
    ).astype(np.int64)


class PrivateMatcher:
    def __init__(
        self, index: MatchIndex, *, reshuffle: timedelta, processes: int = 1, max_pending: int = 4
    ) -> None:
        self._index = index
        self._reshuffle = reshuffle.total_seconds()
        self._processes = processes
        self._max_pending = max_pending
        self._waiting = 0
        self._executors: list[ProcessPoolExecutor] = []
        self._loaded_keys: list[set[str]] = []
        self._build_lock = asyncio.Lock()
        self._pending_build: asyncio.Future[GalleryBuild] | None = None
        self._dirty = True
        self._loaded: str | None = None
        """The build the running HE processes hold (none after they were lost)."""
        self.lost_processes = 0
        """HE processes found dead since start (each replaced): shown in the gallery's readiness."""
        self.builds: OrderedDict[str, GalleryBuild] = OrderedDict()
        self._queries: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()

    @property
    def current(self) -> GalleryBuild | None:
        return next(reversed(self.builds.values())) if self.builds else None

    def mark_dirty(self) -> None:
        """Entries changed: the next build must not hold a deleted or superseded embedding."""
        self._dirty = True

    async def refresh(self, params: HEParameters | None) -> None:
        """Build now, and again while entries changed during a build, so a deleted entry leaves
        the workers at once and the first private query does not wait for a worker to start."""
        while params is not None and (self._dirty or self.current is None or self.current.params != params):
            await self.ensure_build(params)

    def readiness(self, params: HEParameters | None) -> dict[str, object]:
        """``off`` (the manifest allows no private mode), ``building``, ``stale`` (entries changed,
        no build under way yet) or ``ready`` (the loaded build holds exactly the active entries)."""
        if params is None:
            return {"state": "off"}
        build = self.current
        if self._build_lock.locked():
            state = "building"
        elif self._dirty or build is None or build.params != params:
            state = "stale"
        else:
            state = "ready"
        out: dict[str, object] = {"state": state}
        if self.lost_processes:
            out["lost_processes"] = self.lost_processes
        if build is not None and self._loaded == build.build_id:
            out["age_seconds"] = round(time.monotonic() - build.built_at, 1)
        return out

    def _start(self) -> None:
        if not self._executors:
            spawn = multiprocessing.get_context("spawn")
            self._executors = [
                ProcessPoolExecutor(
                    1, mp_context=spawn, initializer=he_worker.exit_with_parent, initargs=(os.getpid(),)
                )
                for _ in range(self._processes)
            ]
            self._loaded_keys = [set() for _ in self._executors]

    def _lost(self, what: str) -> GalleryNotReady:
        """An HE process ended under us (killed, out of memory): start afresh, rebuild the
        gallery at the next query, and tell this querier the peer did not answer."""
        LOG.warning("a private-mode HE process ended during %s; starting new ones and rebuilding", what)
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)
        self._executors = []
        self._loaded_keys = []
        self._loaded = None
        self._dirty = True
        self.lost_processes += 1
        return GalleryNotReady(
            "a private-mode HE process of this node ended; the gallery is being rebuilt, ask again shortly"
        )

    async def close(self) -> None:
        if self._pending_build is not None:
            self._pending_build.cancel()
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)
        self._executors = []

    async def _build_within(self, params: HEParameters) -> GalleryBuild:
        """The current build, waiting at most ``NOT_READY_WAIT`` for one to finish (it carries on
        in the background when the wait ends, so the peer's retry finds it)."""
        task = self._pending_build
        if task is None or task.done():
            task = self._pending_build = asyncio.ensure_future(self.ensure_build(params))
            task.add_done_callback(_retrieve)
        try:
            return await asyncio.wait_for(asyncio.shield(task), NOT_READY_WAIT)
        except TimeoutError:
            state = "first build" if self.current is None else "rebuild after entries changed"
            raise GalleryNotReady(
                f"the private-mode gallery is not ready ({state} under way); ask again in a few seconds"
            ) from None

    async def ensure_build(self, params: HEParameters) -> GalleryBuild:
        """The current build, rebuilt first when entries changed, parameters changed or it is old."""
        async with self._build_lock:
            build = self.current
            stale = (
                build is None or build.params != params or time.monotonic() - build.built_at > self._reshuffle
            )
            if not (self._dirty or stale):
                assert build is not None
                return build
            self._dirty = False
            try:
                return await self._build(params)
            except BaseException:
                self._dirty = True
                raise

    async def _build(self, params: HEParameters) -> GalleryBuild:
        """Snapshot the active entries, place them at fresh random positions and load every worker."""
        self._start()
        keys, vectors = await asyncio.to_thread(self._index.snapshot)
        slots = params.slots
        ciphertexts = -(-len(keys) // slots) if keys else 0
        positions = spread_positions(len(keys), slots, np.random.default_rng(secrets.randbits(128)))
        order = np.random.default_rng(secrets.randbits(128)).permutation(len(keys))
        placed = {int(positions[i]): keys[int(order[i])] for i in range(len(keys))}
        rows = vectors[order] if len(keys) else vectors
        build_id = f"bld-{secrets.token_hex(8)}"
        decoys = secrets.randbits(128)
        loop = asyncio.get_running_loop()
        executors = self._executors
        try:
            sizes = await asyncio.gather(
                *(
                    loop.run_in_executor(
                        executor,
                        he_worker.load_gallery,
                        params.to_dict(),
                        build_id,
                        rows.astype("<f4").tobytes(),
                        vectors.shape[1],
                        positions.astype("<i8").tobytes(),
                        share,
                        len(executors),
                        decoys,
                    )
                    for share, executor in enumerate(executors)
                )
            )
        except BrokenProcessPool:
            raise self._lost("a gallery build") from None
        del rows, vectors
        build = GalleryBuild(build_id, params, placed, ciphertexts, time.monotonic())
        if executors is self._executors:
            self._loaded = build_id
        LOG.info(
            "private-mode gallery %s built: %d entries in %d ciphertexts, %.0f MB pre-encoded in %d processes",
            build_id,
            len(placed),
            ciphertexts,
            sum(sizes) / 1e6,
            len(sizes),
        )
        self.builds[build_id] = build
        while len(self.builds) > 2:
            self.builds.popitem(last=False)
        return build

    async def evaluate(
        self,
        member: str,
        query_id: str,
        key_id: str,
        key_bytes: tuple[bytes, bytes],
        ciphertexts: list[bytes],
        threshold: float,
        params: HEParameters,
    ) -> tuple[GalleryBuild, list[list[bytes]]]:
        """Round 1 in the HE processes (each its share of the products, the first one finishing);
        refused as ``busy`` when the queue of HE jobs is full."""
        if self._waiting >= self._max_pending:
            raise HEBusy(f"{self._waiting} private queries already waiting; try again shortly")
        self._waiting += 1
        try:
            build = await self._build_within(params)
            if not self._executors:
                self._start()
            job = (params.to_dict(), build.build_id, key_id, key_bytes)
            if len(self._executors) == 1:
                results = await self._call(
                    0, he_worker.evaluate, *job, ciphertexts, threshold, secrets.randbits(64)
                )
            else:
                results = await self._in_shares(job, build, ciphertexts, threshold)
        finally:
            self._waiting -= 1
        self._remember(member, query_id, build.build_id)
        return build, results

    async def _in_shares(
        self, job: tuple[Any, ...], build: GalleryBuild, ciphertexts: list[bytes], threshold: float
    ) -> list[list[bytes]]:
        """Every process computes its share of every query's products; then each finishes the
        gallery ciphertexts ``c`` with ``c % processes`` its own, from all the shares' parts."""
        count = len(self._executors)
        parts = await asyncio.gather(
            *(self._call(w, he_worker.share_products, *job, ciphertexts) for w in range(count))
        )
        norms = [q[build.ciphertexts] if build.params.norm_check else None for q in parts[-1]]
        owned = {w: list(range(w, build.ciphertexts, count)) for w in range(count)}
        owned = {w: cts for w, cts in owned.items() if cts}
        finished = await asyncio.gather(
            *(
                self._call(
                    w,
                    he_worker.finish_shares,
                    *job,
                    [[[share[q][c] for share in parts] for c in cts] for q in range(len(ciphertexts))],
                    norms,
                    threshold,
                    secrets.randbits(64),
                )
                for w, cts in owned.items()
            )
        )
        results: list[list[bytes]] = []
        for q in range(len(ciphertexts)):
            answer: list[bytes] = [b""] * build.ciphertexts
            for cts, done in zip(owned.values(), finished, strict=True):
                for c, data in zip(cts, done[q], strict=True):
                    answer[c] = data
            results.append(answer)
        return results

    async def _call(
        self,
        worker: int,
        job: Any,
        params: dict[str, Any],
        build_id: str,
        key_id: str,
        key_bytes: tuple[bytes, bytes],
        *rest: Any,
    ) -> Any:
        """``job`` in HE process ``worker``, with the member's evaluation keys sent along the first
        time it needs them, or again when it says it lost them (a restarted process)."""
        loop = asyncio.get_running_loop()
        executor, loaded = self._executors[worker], self._loaded_keys[worker]
        send = None if key_id in loaded else key_bytes
        while True:
            try:
                result = await loop.run_in_executor(executor, job, params, build_id, key_id, send, *rest)
                break
            except he_worker.MissingKey:
                if send is not None:
                    raise
                send = key_bytes
            except BrokenProcessPool:
                if executor in self._executors:
                    raise self._lost("a private query") from None
                raise GalleryNotReady(
                    "the private-mode gallery is being rebuilt; ask again shortly"
                ) from None
        loaded.add(key_id)
        return result

    def _remember(self, member: str, query_id: str, build_id: str) -> None:
        now = time.monotonic()
        self._queries[(member, query_id)] = (build_id, now)
        while len(self._queries) > REMEMBERED_QUERIES:
            self._queries.popitem(last=False)

    def entry_at(self, member: str, query_id: str, build_id: str, position: int) -> str | None:
        """The entry at ``position`` of the build this member's round-1 query ran on."""
        known = self._queries.get((member, query_id))
        if (
            known is None
            or known[0] != build_id
            or time.monotonic() - known[1] > QUERY_MEMORY.total_seconds()
        ):
            raise UnknownPrivateQuery(
                f"no recent private query {query_id} from {member} on build {build_id}; run round 1 again"
            )
        build = self.builds.get(build_id)
        if build is None:
            raise UnknownPrivateQuery(f"gallery build {build_id} was replaced; run round 1 again")
        return build.keys.get(position)


def _retrieve(task: asyncio.Future[GalleryBuild]) -> None:
    """A background build's failure is logged here (the next query starts another)."""
    if not task.cancelled() and task.exception() is not None:
        LOG.warning("private-mode gallery build failed: %s", type(task.exception()).__name__)
