"""Which of some byte strings a running process still holds anywhere in its writable memory.

``node.demo.story.process_holds`` looks for a few needles with ``in``; a camera run has hundreds
of faces (each embedding, its base64 and its crop), each of which may sit at any address and be
partly overwritten, so that would read the memory once per needle. Here the memory is read once:
each readable, writable mapping of ``/proc/PID/mem`` (the heap, anonymous mappings, thread
stacks: where a process puts what it computes; not the files it maps read-only, e.g. libraries
and model weights) is viewed as aligned 8-byte words and looked up, all at once, in the sorted
words of every blob at each of its 8 byte offsets; a hit counts when the ``WINDOW`` bytes there
are the blob's own. Words of fewer than 4 distinct bytes (zeros, a grey background) are not
looked up: they are in every process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["WINDOW", "held", "held_in"]

WINDOW = 32
"""Bytes of a blob that must be found together: 2^-256 for a chance match of random bytes."""
CHUNK = 64 << 20


BITS = 26


def _bucket(words: np.ndarray) -> np.ndarray:
    return ((words * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - BITS)).astype(np.int64)


@dataclass(frozen=True)
class _Table:
    words: np.ndarray
    owners: np.ndarray
    offsets: np.ndarray
    bitmap: np.ndarray


def _table(blobs: Sequence[bytes]) -> _Table:
    words, owners, offsets = [], [], []
    for b, blob in enumerate(blobs):
        for shift in range(8):
            n = (len(blob) - shift - WINDOW) // 8 + 1
            if n <= 0:
                continue
            w = np.frombuffer(blob, dtype="<u8", count=n, offset=shift)
            ordered = np.sort(w.view(np.uint8).reshape(n, 8), axis=1)
            distinct = 1 + (np.diff(ordered, axis=1) != 0).sum(axis=1) >= 4
            words.append(w[distinct])
            owners.append(np.full(int(distinct.sum()), b, dtype=np.int32))
            offsets.append((shift + 8 * np.arange(n, dtype=np.int64))[distinct])
    word = np.concatenate(words) if words else np.zeros(0, dtype="<u8")
    order = np.argsort(word, kind="stable")
    bitmap = np.zeros(1 << BITS, dtype=bool)
    bitmap[_bucket(word)] = True
    return _Table(word[order], np.concatenate(owners)[order], np.concatenate(offsets)[order], bitmap)


def _mappings(pid: int) -> list[tuple[int, int]]:
    out = []
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split()
            path = fields[5] if len(fields) > 5 else ""
            if not fields[1].startswith("rw") or path.startswith("[v"):
                continue
            if path and not path.startswith("["):  # a file's own pages (.data of a library)
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            out.append((start, end))
    return out


def held(pids: Sequence[int], blobs: Sequence[bytes]) -> set[int]:
    """The indices of ``blobs`` of which some ``WINDOW`` bytes are in the memory of one of ``pids``.

    A process that exits while it is read is skipped (as the demo's scan does)."""
    table = _table(blobs)
    found: set[int] = set()
    if not len(table.words):
        return found
    for pid in pids:
        try:
            regions = _mappings(pid)
            mem = open(f"/proc/{pid}/mem", "rb", 0)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        with mem:
            for start, end in regions:
                at = start
                while at < end:
                    size = min(CHUNK, end - at)
                    try:
                        mem.seek(at)
                        chunk = mem.read(size + (WINDOW if at + size < end else 0))
                    except (OSError, ValueError, OverflowError):
                        break
                    _scan(chunk, size, blobs, table, found)
                    at += size
    return found


def held_in(data: bytes, blobs: Sequence[bytes]) -> set[int]:
    """The indices of ``blobs`` of which some ``WINDOW`` bytes are in ``data`` (a file's)."""
    table = _table(blobs)
    found: set[int] = set()
    _scan(data, len(data), blobs, table, found)
    return found


def _scan(chunk: bytes, size: int, blobs: Sequence[bytes], table: _Table, found: set[int]) -> None:
    n = min(size, len(chunk)) // 8
    if n == 0:
        return
    mem = np.frombuffer(chunk, dtype="<u8", count=n)
    maybe = np.nonzero(table.bitmap[_bucket(mem)])[0]  # a cheap filter before the sorted lookup
    if not len(maybe):
        return
    values = mem[maybe]
    where = np.searchsorted(table.words, values)
    where[where == len(table.words)] = 0
    hit = table.words[where] == values
    positions, entries = maybe[hit], where[hit]
    owner_of_hit = table.owners[entries]
    for b in np.unique(owner_of_hit).tolist():
        if b in found:
            continue
        for position in positions[owner_of_hit == b][:64].tolist():
            value = mem[position]
            first = int(np.searchsorted(table.words, value, side="left"))
            last = int(np.searchsorted(table.words, value, side="right"))
            for k in range(first, last):
                if int(table.owners[k]) != b:
                    continue
                offset = int(table.offsets[k])
                window = blobs[b][offset : offset + WINDOW]
                if chunk[position * 8 : position * 8 + WINDOW] == window:
                    found.add(b)
                    break
            if b in found:
                break
