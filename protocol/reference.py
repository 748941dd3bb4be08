"""Asking the owner of an entry for its registered face crop, for an operator's decision on an alert.

An operator asked "is this the person?" compares the camera's crop with the face the owner
registered. A member's signed entry holds no face (only a salted commitment to the embedding),
so the member whose alert names another member's entry asks the owner for the crop when its
operator opens the alert, in a signed, sealed peer message under the purpose
``crime-prevention`` (``POST /v1/peer/reference-face``). The owner answers only when the manifest
lists ``face-image`` among the jointly used items, only for a live (active) entry, and only to a
member it told of a match on that entry within the last 24 hours; the answer is sealed to the
asking node like every peer answer, and the asker shows it once and keeps nothing
(docs/protocol.md, "Reference face").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

from protocol.canonical import b64url_encode
from protocol.errors import MalformedError
from protocol.fields import ID_RE
from protocol.signed import SPEC_VERSION, Payload

__all__ = ["MAX_FACE_IMAGE_BYTES", "ReferenceFace", "ReferenceFaceRequest"]

MAX_FACE_IMAGE_BYTES = 64 << 10
"""A registered crop is a 112x112 JPEG of a few KB; anything above this is refused either way."""
_JPEG_MAGIC = b"\xff\xd8\xff"


def _check_ids(what: str, entry_id: str, entry_version: int) -> None:
    if not ID_RE.fullmatch(entry_id):
        raise MalformedError(f"{what}.entry_id: {entry_id!r:.70} is not an id")
    if entry_version < 1:
        raise MalformedError(f"{what}.entry_version: expected >= 1, got {entry_version}")


@dataclass(kw_only=True)
class ReferenceFaceRequest(Payload):
    """The asker's alert ``alert_id`` names the owner's entry ``entry_id`` at ``entry_version``."""

    TYPE = "reference-face-request"

    alert_id: str
    entry_id: str
    entry_version: int
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not ID_RE.fullmatch(self.alert_id):
            raise MalformedError(f"reference-face-request.alert_id: {self.alert_id!r:.70} is not an id")
        _check_ids("reference-face-request", self.entry_id, self.entry_version)

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "alert_id": self.alert_id,
                "entry_id": self.entry_id,
                "entry_version": self.entry_version,
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            alert_id=f.text("alert_id", max_len=64, pattern=ID_RE),
            entry_id=f.text("entry_id", max_len=64, pattern=ID_RE),
            entry_version=f.integer("entry_version", low=1),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )


@dataclass(kw_only=True)
class ReferenceFace(Payload):
    """The owner's registered face crop of ``entry_id`` (JPEG) as it stands at ``entry_version``."""

    TYPE = "reference-face"

    entry_id: str
    entry_version: int
    face_image_jpeg: bytes
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_ids("reference-face", self.entry_id, self.entry_version)
        if len(self.face_image_jpeg) > MAX_FACE_IMAGE_BYTES:
            raise MalformedError(
                f"reference-face.face_image_jpeg: {len(self.face_image_jpeg)} bytes, limit {MAX_FACE_IMAGE_BYTES}"
            )
        if not self.face_image_jpeg.startswith(_JPEG_MAGIC):
            raise MalformedError("reference-face.face_image_jpeg: not a JPEG image (no FF D8 FF start)")

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "entry_id": self.entry_id,
                "entry_version": self.entry_version,
                "face_image_jpeg": b64url_encode(self.face_image_jpeg),
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            entry_id=f.text("entry_id", max_len=64, pattern=ID_RE),
            entry_version=f.integer("entry_version", low=1),
            face_image_jpeg=f.binary("face_image_jpeg", max_len=MAX_FACE_IMAGE_BYTES),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )
