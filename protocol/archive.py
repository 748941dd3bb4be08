"""The sealed backup archive: one file, readable only with its passphrase, whose end is known.

A backup holds a node's database and, when asked, its secret keys, so it is encrypted and
authenticated as a whole, and a copy cut short or extended is refused rather than restored in
part. The parts are libsodium's: the key is derived from the passphrase with argon2id
(``crypto_pwhash``), the content is a ``crypto_secretstream_xchacha20poly1305`` stream whose
last frame carries ``TAG_FINAL``. The layout around them:

    magic    8 bytes  b"WNBACKUP"
    length   4 bytes  big-endian length of the header, at most 4096
    header   RFC 8785 JSON: {"format": "watchnet-backup", "version": 1, "frame": 65536,
             "kdf": {"name": "argon2id13", "salt": b64url(16), "opslimit": n, "memlimit": n}}
    stream   24 bytes secretstream header
    frames   each: 4 bytes big-endian length, then the ciphertext of at most ``frame``
             plaintext bytes (+17); the first frame's additional data is magic + length +
             header, so the header cannot be changed; nothing may follow the final frame.

What the plaintext is (a tar stream of the node's files) is the caller's business.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Final

from nacl import bindings, pwhash
from nacl.exceptions import CryptoError

from protocol.canonical import b64url_decode, b64url_encode, canonical_bytes, parse_json
from protocol.errors import BackupError, DecryptionError

__all__ = ["MAGIC", "ArchiveReader", "ArchiveWriter", "KdfCost"]

MAGIC: Final = b"WNBACKUP"
FORMAT: Final = "watchnet-backup"
VERSION: Final = 1
FRAME: Final = 64 * 1024
MAX_HEADER: Final = 4096
MAX_OPSLIMIT: Final = 16
MAX_MEMLIMIT: Final = 1024 * 1024 * 1024
"""A hostile file cannot make verification spend more than 1 GiB and 16 passes deriving its key."""
_ABYTES: Final = bindings.crypto_secretstream_xchacha20poly1305_ABYTES
_HEADERBYTES: Final = bindings.crypto_secretstream_xchacha20poly1305_HEADERBYTES
_KEYBYTES: Final = bindings.crypto_secretstream_xchacha20poly1305_KEYBYTES
_FINAL: Final = bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_MESSAGE: Final = bindings.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_LENGTH = struct.Struct(">I")


class KdfCost:
    """argon2id's cost: libsodium's "moderate" (3 passes, 256 MiB) by default, about a second."""

    def __init__(
        self,
        opslimit: int = pwhash.argon2id.OPSLIMIT_MODERATE,
        memlimit: int = pwhash.argon2id.MEMLIMIT_MODERATE,
    ) -> None:
        if not (pwhash.argon2id.OPSLIMIT_MIN <= opslimit <= MAX_OPSLIMIT):
            raise BackupError(f"argon2id opslimit {opslimit} is outside 1..{MAX_OPSLIMIT}")
        if not (pwhash.argon2id.MEMLIMIT_MIN <= memlimit <= MAX_MEMLIMIT):
            raise BackupError(f"argon2id memlimit {memlimit} is outside 8 KiB..1 GiB")
        self.opslimit = opslimit
        self.memlimit = memlimit


def _key(passphrase: bytes, salt: bytes, cost: KdfCost) -> bytes:
    if not passphrase:
        raise BackupError("the passphrase is empty")
    return bytes(pwhash.argon2id.kdf(_KEYBYTES, passphrase, salt, cost.opslimit, cost.memlimit))


class ArchiveWriter:
    """Write plaintext in; sealed frames go to ``out``. ``close()`` writes the final frame."""

    def __init__(self, out: BinaryIO, passphrase: bytes, cost: KdfCost | None = None) -> None:
        cost = cost or KdfCost()
        salt = bindings.randombytes(pwhash.argon2id.SALTBYTES)
        header = canonical_bytes(
            {
                "format": FORMAT,
                "version": VERSION,
                "frame": FRAME,
                "kdf": {
                    "name": "argon2id13",
                    "salt": b64url_encode(salt),
                    "opslimit": cost.opslimit,
                    "memlimit": cost.memlimit,
                },
            }
        )
        self._ad: bytes | None = MAGIC + _LENGTH.pack(len(header)) + header
        self._out = out
        self._state = bindings.crypto_secretstream_xchacha20poly1305_state()
        stream_header = bindings.crypto_secretstream_xchacha20poly1305_init_push(
            self._state, _key(passphrase, salt, cost)
        )
        out.write(self._ad + stream_header)
        self._pending = bytearray()
        self._closed = False
        self.written = 0
        """Plaintext bytes taken so far."""

    def write(self, data: bytes) -> int:
        if self._closed:
            raise ValueError("the archive is closed")
        self._pending += data
        self.written += len(data)
        while len(self._pending) > FRAME:
            self._frame(bytes(self._pending[:FRAME]), _MESSAGE)
            del self._pending[:FRAME]
        return len(data)

    def _frame(self, plaintext: bytes, tag: int) -> None:
        sealed = bindings.crypto_secretstream_xchacha20poly1305_push(self._state, plaintext, self._ad, tag)
        self._ad = None
        self._out.write(_LENGTH.pack(len(sealed)) + sealed)

    def close(self) -> None:
        if not self._closed:
            self._frame(bytes(self._pending), _FINAL)
            self._pending.clear()
            self._closed = True


class ArchiveReader:
    """Read the plaintext back, frame by frame, refusing a wrong passphrase, a changed byte, a
    copy cut short and anything after the final frame. ``read()`` is a file-like read."""

    def __init__(self, source: BinaryIO, passphrase: bytes) -> None:
        self._source = source
        self.read_bytes = len(MAGIC)
        """Sealed bytes consumed so far (for progress)."""
        magic = source.read(len(MAGIC))
        if magic != MAGIC:
            raise BackupError("not a watchnet backup (its first bytes are not WNBACKUP)")
        raw_length = self._exact(_LENGTH.size, "header length")
        (length,) = _LENGTH.unpack(raw_length)
        if length > MAX_HEADER:
            raise BackupError(f"the backup's header is {length} bytes, more than {MAX_HEADER}")
        header_bytes = self._exact(length, "header")
        header = parse_json(header_bytes, max_bytes=MAX_HEADER)
        self.header = self._check_header(header)
        kdf = header["kdf"]
        salt = b64url_decode(kdf["salt"], field="kdf.salt", length=pwhash.argon2id.SALTBYTES)
        cost = KdfCost(kdf["opslimit"], kdf["memlimit"])
        self._ad: bytes | None = MAGIC + raw_length + header_bytes
        self._state = bindings.crypto_secretstream_xchacha20poly1305_state()
        bindings.crypto_secretstream_xchacha20poly1305_init_pull(
            self._state, self._exact(_HEADERBYTES, "stream header"), _key(passphrase, salt, cost)
        )
        self._frame_limit = int(header["frame"]) + _ABYTES
        self._buffer = b""
        self._ended = False

    @staticmethod
    def _check_header(header: object) -> dict[str, object]:
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise BackupError("the backup's header does not name the watchnet-backup format")
        if header.get("version") != VERSION:
            raise BackupError(
                f"backup format version {header.get('version')!r}; this watchnet reads version {VERSION}"
            )
        kdf = header.get("kdf")
        if not isinstance(kdf, dict) or kdf.get("name") != "argon2id13":
            raise BackupError("the backup's key derivation is not argon2id13")
        if not all(isinstance(kdf.get(k), int) for k in ("opslimit", "memlimit")):
            raise BackupError("the backup's argon2id costs are not integers")
        if not isinstance(kdf.get("salt"), str):
            raise BackupError("the backup's argon2id salt is missing")
        frame = header.get("frame")
        if not isinstance(frame, int) or not (1 <= frame <= 1024 * 1024):
            raise BackupError(f"the backup's frame size {frame!r} is outside 1 B..1 MiB")
        return header

    def _exact(self, n: int, what: str) -> bytes:
        data = self._source.read(n)
        if len(data) != n:
            raise BackupError(f"the backup ends inside its {what}: the file is truncated")
        self.read_bytes += n
        return data

    def _next_frame(self) -> bytes:
        head = self._source.read(_LENGTH.size)
        if len(head) != _LENGTH.size:
            raise BackupError("the backup ends before its final frame: the file is truncated")
        (length,) = _LENGTH.unpack(head)
        if not (_ABYTES <= length <= self._frame_limit):
            raise BackupError(f"a frame of {length} bytes, outside {_ABYTES}..{self._frame_limit}")
        sealed = self._exact(length, "last frame")
        self.read_bytes += _LENGTH.size
        try:
            plaintext, tag = bindings.crypto_secretstream_xchacha20poly1305_pull(
                self._state, sealed, self._ad
            )
        except CryptoError as e:
            if self._ad is not None:
                raise DecryptionError(
                    "the backup does not open: a wrong passphrase, or the file was changed"
                ) from e
            raise DecryptionError(
                "the backup was changed after it was written (a frame does not open)"
            ) from e
        self._ad = None
        if tag == _FINAL:
            self._ended = True
            if self._source.read(1):
                raise BackupError("bytes follow the backup's final frame: the file was extended")
        elif tag != _MESSAGE:
            raise BackupError(f"a frame with tag {tag}, not a message or the final frame")
        return bytes(plaintext)

    def read(self, size: int = -1) -> bytes:
        while not self._ended and (size < 0 or len(self._buffer) < size):
            self._buffer += self._next_frame()
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    @property
    def complete(self) -> bool:
        """The final frame was read: everything the writer sealed arrived."""
        return self._ended
