"""``watchnet face ...``: detect faces, check their quality, embed them and compare two images.

``face embed`` writes the embedding file that ``watchnet entry propose`` and ``watchnet match``
read. Embeddings are written only where the user asks (a file of their own); nothing is logged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from governance.rules import FaceQuality
from node.files import write_atomic
from protocol.errors import MalformedError

if TYPE_CHECKING:
    from node.face.pipeline import FacePipeline

__all__ = ["register"]


def _pipeline(args: argparse.Namespace) -> FacePipeline:
    from node.face.models import ModelPack
    from node.face.pipeline import FacePipeline

    pack = ModelPack.locate(Path(args.model_dir) if args.model_dir else None)
    if args.node:
        from node.config import MANIFEST_FILE, load_manifest_file

        pack.check_pin(load_manifest_file(Path(args.node) / MANIFEST_FILE).payload.policy.model)
    return FacePipeline(pack)


def _image(path: str) -> Any:
    from node.face.pipeline import decode_image

    try:
        return decode_image(Path(path).read_bytes())
    except FileNotFoundError as e:
        raise MalformedError(f"image {path} not found; give the path of a JPEG or PNG photo") from e


def _quality_limits(args: argparse.Namespace) -> FaceQuality | None:
    if not args.node:
        return FaceQuality() if getattr(args, "check_quality", False) else None
    import tomllib

    from governance.rules import RegistrationRules
    from node.config import RULES_FILE

    return RegistrationRules.from_dict(
        tomllib.loads((Path(args.node) / RULES_FILE).read_text("utf-8"))
    ).face_quality


def cmd_detect(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    faces = pipeline.detect(_image(args.image))
    limits = _quality_limits(args) or FaceQuality()
    data = {
        "image": args.image,
        "model": pipeline.pack.model_id,
        "faces": [{**f.to_dict(), "quality_failures": f.quality.failures(limits)} for f in faces],
    }
    if args.json:
        print(json.dumps(data, sort_keys=True))
    else:
        print(f"{len(faces)} face(s) in {args.image}")
        for i, face in enumerate(data["faces"]):
            verdict = "ok" if not face["quality_failures"] else "; ".join(face["quality_failures"])
            print(f"  [{i}] box={face['box']} {face['quality']} -> {verdict}")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    face, embedding = pipeline.best_face(_image(args.image), _quality_limits(args))
    write_atomic(Path(args.out), (embedding.to_str() + "\n").encode("ascii"))
    data = {
        "out": args.out,
        "model": pipeline.pack.model_id,
        "dimension": embedding.dimension,
        **face.to_dict(),
    }
    print(
        json.dumps(data, sort_keys=True)
        if args.json
        else f"wrote the embedding of the best face to {args.out}"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    _, a = pipeline.best_face(_image(args.image_a))
    _, b = pipeline.best_face(_image(args.image_b))
    similarity = a.similarity(b)
    data = {"similarity": round(similarity, 6), "model": pipeline.pack.model_id}
    print(json.dumps(data, sort_keys=True) if args.json else f"cosine similarity {similarity:.4f}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    face = sub.add_parser("face", help="face detection, quality and embeddings with the pinned model")
    commands = face.add_subparsers(dest="face_command", metavar="COMMAND", required=True)

    def command(name: str, handler: Any, text: str) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=text, description=text)
        p.set_defaults(handler=handler)
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
        p.add_argument(
            "--node", help="node directory: check the manifest's model pin and use its quality rules"
        )
        p.add_argument(
            "--model-dir", help="folder with the detector and ArcFace ONNX files (default: the shipped pack)"
        )
        return p

    p = command("detect", cmd_detect, "list faces with box, detection score and quality checks")
    p.add_argument("image")
    p = command("embed", cmd_embed, "write the embedding of the best face (for 'entry propose' and 'match')")
    p.add_argument("image")
    p.add_argument("--out", required=True, help="embedding file to write")
    p.add_argument("--check-quality", action="store_true", help="apply the default quality thresholds")
    p = command("compare", cmd_compare, "cosine similarity of the best face in each image")
    p.add_argument("image_a")
    p.add_argument("image_b")
