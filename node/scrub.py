"""Freed memory overwritten, so that a face the process let go of does not stay in its heap.

Dropping the last reference to a camera frame's crop, an embedding or the JSON body that carried
it frees the buffer, but glibc's ``free`` leaves its bytes where they were until the chunk is
used again: a read of the process's memory (a core dump, ``/proc/PID/mem``, a swapped-out
page) would find the faces of passers-by who matched nothing, long after their tracks ended
(``tests/test_camera_memory.py`` found 44 of a test's strangers' embeddings and crops in the
camera worker and 48 in the node before this). Python ``bytes`` and ``str`` are immutable and
pass through many hands (requests, aiohttp, json), so overwriting each one where it is dropped
is not possible; the allocator can do it for all of them. ``mallopt(M_PERTURB)`` makes every
``free`` of a chunk outside the per-thread cache (more than 1,032 bytes: an embedding is 2,048,
its base64 2,731, a crop 37,632) fill it with ``FREED_BYTE``, and buffers of 128 KiB and more
are returned to the kernel (``munmap``) anyway. ``malloc`` then fills what it hands out with
the byte's complement, zero. Cost: one ``memset`` per allocation and per free of such chunks.

Not glibc (e.g. musl): nothing happens and ``scrub_freed_memory`` says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["FREED_BYTE", "scrub_freed_memory"]

M_PERTURB = -6
"""glibc's ``mallopt`` parameter (malloc.h)."""
FREED_BYTE = 0xFF
"""What a freed chunk is filled with; ``malloc`` gives out its complement (zeros)."""


def scrub_freed_memory() -> bool:
    """Have glibc overwrite every chunk it frees from now on in this process (and its forks);
    whether it could."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_PERTURB, FREED_BYTE))
