"""Private-mode queries: CKKS costs per stage, bytes on the wire, and a real round trip on loopback,
beside plain mode and bare faiss on the same vectors in the same run.

Per gallery size N (random unit 512-d rows, as in bench/query.py):

- two answers: the sign of ``s - t`` (moduli 60+60) and the norm check, ``s^2 - t^2 |q|^2``
  (moduli 60+60+60, the demo group's setting); the round trips use the manifest's setting;
- ``build``: pre-encoding the shuffled gallery (decoys fill the last ciphertext) and its memory;
- ``encrypt`` / ``server`` / ``decrypt``: the querier's encryption of one face, the answering
  node's masked encrypted scores (rotations, plaintext products, conjugate, mask, noise) and the
  querier's decryption, each the median of ``--reps`` runs in this process on one core;
- ``faiss``: ``IndexFlatIP.search`` of the same face (k=8), the raw limit of plain matching;
- ``round trip``: through a real ``watchnet serve`` process holding N entries (filled as in
  bench/query.py), this process acting as chain-b: encrypt, seal, POST round 1, open, decrypt,
  and round 2 when a value is positive (``--hit-rate`` of the faces are registered ones plus
  noise); plain mode's round trip on the same node beside it.

    python bench/private_query.py                       # 1k, 10k, 100k (100k fills for ~1 min)
    python bench/private_query.py --sizes 1000 --reps 5 # a quick look
    python bench/private_query.py --sizes 10000 --no-network --processes 1 2 4

``--processes`` times the norm check as the node runs it, in ``[federation] he_processes``
spawned HE processes (``node.private.he_worker``), each with its share of the gallery.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.query import build_group, gallery, say  # noqa: E402
from node.private.matcher import PrivateMatcher, spread_positions  # noqa: E402
from protocol.embedding import Embedding  # noqa: E402
from protocol.he import EncryptedGallery, HEContext, QueryKeys  # noqa: E402
from protocol.he_params import HEParameters  # noqa: E402
from protocol.message import (  # noqa: E402
    MAX_BULK_SEALED_BYTES,
    PeerKeys,
    compose_sealed,
    decode_body,
    open_sealed,
)
from protocol.private_query import (  # noqa: E402
    Candidate,
    EvaluationKeys,
    EvaluationKeysAck,
    PrivateQuery,
    PrivateScores,
    RevealRequest,
)
from protocol.query import QueryRequest, QueryResponse  # noqa: E402
from protocol.signed import Payload  # noqa: E402


def ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


class _Watchlist:
    """The rows as the node's match index hands them to a gallery build."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows

    def snapshot(self) -> tuple[list[str], np.ndarray]:
        return [f"ent-{i}" for i in range(len(self.rows))], self.rows


def in_processes(size: int, reps: int, params: HEParameters, processes: int) -> dict[str, Any]:
    """Server time as the node computes round 1: ``PrivateMatcher.evaluate`` with
    ``[federation] he_processes`` spawned HE processes, each holding its share of the gallery
    (inter-process hand-offs included). Each answer is decrypted and must match its face."""
    rows = gallery(size)
    keys = QueryKeys.generate(HEContext(params))

    async def run() -> tuple[list[float], int, float]:
        matcher = PrivateMatcher(_Watchlist(rows), reshuffle=timedelta(hours=1), processes=processes)  # type: ignore[arg-type]
        try:
            t = time.perf_counter()
            await matcher.refresh(params)
            build_s = time.perf_counter() - t
            times, matched = [], 0
            for i in range(reps + 1):
                face = i % size
                blob = [keys.encrypt(rows[face])]
                t = time.perf_counter()
                build, answer = await matcher.evaluate(
                    "chain-b",
                    f"qry-{i}",
                    keys.key_id,
                    (keys.galois_keys, keys.relin_keys),
                    blob,
                    0.45,
                    params,
                )
                elapsed = time.perf_counter() - t
                position = next(p for p, entry in build.keys.items() if entry == f"ent-{face}")
                matched += bool(keys.decrypt(answer[0]).real[position] > 0)
                if i:  # the first carries the evaluation keys to every process
                    times.append(elapsed)
            return times, matched, build_s
        finally:
            await matcher.close()

    times, matched, build_s = asyncio.run(run())
    return {
        "entries": size,
        "processes": processes,
        "server_ms": ms(times),
        "server_ms_max": max(times) * 1000,
        "build_s": build_s,
        "matched": matched,
        "asked": reps + 1,
    }


def stages(size: int, reps: int, params: HEParameters, label: str) -> dict[str, Any]:
    rows = gallery(size)
    context = HEContext(params)
    keys = QueryKeys.generate(context)
    t = time.perf_counter()
    built = EncryptedGallery(context, rows, spread_positions(size, params.slots, np.random.default_rng(1)))
    build_s = time.perf_counter() - t
    galois = context.galois_keys(keys.galois_keys)
    relin = context.relin_keys(keys.relin_keys)
    rng = np.random.default_rng(2)
    enc, srv, dec, ip_only, flat = [], [], [], [], []
    index = faiss.IndexFlatIP(rows.shape[1])
    index.add(rows)
    for i in range(reps):
        face = rows[i % size]
        t = time.perf_counter()
        blob = keys.encrypt(face)
        enc.append(time.perf_counter() - t)
        query = context.load_query(blob)
        t = time.perf_counter()
        built.inner_products(query, galois)
        ip_only.append(time.perf_counter() - t)
        t = time.perf_counter()
        answer = built.masked_scores(query, galois, 0.45, rng, relin)
        srv.append(time.perf_counter() - t)
        t = time.perf_counter()
        keys.decrypt(answer)
        dec.append(time.perf_counter() - t)
        t = time.perf_counter()
        index.search(face.reshape(1, -1), 8)
        flat.append(time.perf_counter() - t)
    return {
        "answer": label,
        "entries": size,
        "ciphertexts": built.ciphertexts,
        "baby_step": built.baby,
        "build_s": build_s,
        "gallery_mb": built.memory_bytes / 1e6,
        "encrypt_ms": ms(enc),
        "server_ms": ms(srv),
        "server_inner_products_ms": ms(ip_only),
        "decrypt_ms": ms(dec),
        "faiss_ms": ms(flat),
        "query_bytes": len(blob),
        "answer_bytes": sum(len(a) for a in answer),
        "eval_key_bytes": len(keys.galois_keys) + len(keys.relin_keys),
    }


class Chain:
    """chain-b's side of a real exchange with chain-a, from chain-b's key files."""

    def __init__(self, group: Any) -> None:
        self.group = group
        self.a = group.member_a
        self.keys_a = PeerKeys(self.a.signing_key, self.a.encryption_key)

    def post(self, path: str, body: Payload, expected: type[Payload]) -> tuple[Any, int, int]:
        raw = compose_sealed(
            sender="chain-b",
            recipient="chain-a",
            manifest_version=self.group.manifest.version,
            purpose=self.group.purpose,
            body=body,
            issued_at=datetime.now(UTC),
            signing_key=self.group.b.signing_key(),
            sender_key=self.group.b.encryption_key(),
            recipient_key=self.a.encryption_key,
            max_bytes=MAX_BULK_SEALED_BYTES,
        )
        request = urllib.request.Request(
            f"{self.group.a.url}{path}", data=raw, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = response.read()
        signed = open_sealed(
            answer,
            recipient_id="chain-b",
            recipient_key=self.group.b.encryption_key(),
            lookup_sender=lambda _: self.keys_a,
            max_bytes=MAX_BULK_SEALED_BYTES,
        )
        return decode_body(signed.payload, {expected.TYPE: expected}), len(raw), len(answer)


def round_trips(size: int, reps: int, hit_rate: float, params: HEParameters) -> dict[str, Any]:
    rows = gallery(size)
    targets = min(20, size)
    with tempfile.TemporaryDirectory(prefix="wn-private-bench-") as tmp:
        say(f"{size:,} entries: filling chain-a")
        group = build_group(Path(tmp), rows, targets)
        group.a.start()
        try:
            chain = Chain(group)
            keys = QueryKeys.generate(HEContext(params))
            bundle = EvaluationKeys(
                owner="chain-b",
                key_id=keys.key_id,
                params=params,
                not_after=(datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0),
                galois_keys=keys.galois_keys,
                relin_keys=keys.relin_keys,
            )
            t = time.perf_counter()
            _, key_wire, _ = chain.post("/v1/peer/private/keys", bundle, EvaluationKeysAck)
            keys_s = time.perf_counter() - t
            model = group.manifest.policy.model.model_id
            rng = np.random.default_rng(5)
            private, plain, wire_q, wire_a, hits, found = [], [], [], [], 0, 0
            for i in range(reps + 2):
                if rng.random() < hit_rate:
                    noisy = rows[int(rng.integers(targets))] + 0.03 * rng.normal(size=rows.shape[1])
                    face = Embedding.from_vector(noisy)
                    hits += i >= 2
                else:
                    face = Embedding.from_vector(rng.normal(size=rows.shape[1]))
                query_id = f"qry-{secrets.token_hex(10)}"
                t = time.perf_counter()
                body = PrivateQuery(
                    query_id=query_id,
                    model_id=model,
                    key_id=keys.key_id,
                    ciphertexts=[keys.encrypt(face.vector)],
                )
                scores, sent, got = chain.post("/v1/peer/private/query", body, PrivateScores)
                values = keys.decrypt(scores.results[0]).real
                positive = np.flatnonzero(values > 0)[:16]
                if len(positive):
                    reveal = RevealRequest(
                        query_id=query_id,
                        build_id=scores.build_id,
                        model_id=model,
                        candidates=[
                            Candidate(query_index=0, position=int(p), embedding=face) for p in positive
                        ],
                    )
                    answer, _, _ = chain.post("/v1/peer/private/reveal", reveal, QueryResponse)
                    found += i >= 2 and bool(answer.matches)
                elapsed = time.perf_counter() - t
                t = time.perf_counter()
                request = QueryRequest(
                    query_id=f"qry-{secrets.token_hex(10)}", model_id=model, embeddings=[face]
                )
                chain.post("/v1/peer/query", request, QueryResponse)
                plain_s = time.perf_counter() - t
                if i >= 2:
                    private.append(elapsed)
                    plain.append(plain_s)
                    wire_q.append(sent)
                    wire_a.append(got)
        finally:
            group.a.stop()
    return {
        "entries": size,
        "keys_upload_s": keys_s,
        "keys_wire_bytes": key_wire,
        "private_round_trip_ms_p50": ms(private),
        "private_round_trip_ms_max": max(private) * 1000,
        "plain_round_trip_ms_p50": ms(plain),
        "query_wire_bytes": int(statistics.median(wire_q)),
        "answer_wire_bytes": int(statistics.median(wire_a)),
        "hits_sent": hits,
        "hits_found": found,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--reps", type=int, default=20, help="queries per measurement (median reported)")
    parser.add_argument("--hit-rate", type=float, default=0.2)
    parser.add_argument("--no-network", action="store_true", help="skip the loopback round trips")
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        default=[1, 2],
        help="HE process counts to time the norm check in, as [federation] he_processes (default 1 2)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    sign_only = HEParameters()
    params = HEParameters(coeff_modulus_bits=(60, 60, 60), norm_check=True)
    """The demo group's setting; ``sign_only`` is the cheaper answer without the norm check."""
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {faiss.omp_get_max_threads()} threads, Python {platform.python_version()}",
        "params": params.to_dict(),
        "stages": [],
        "processes": [],
        "round_trips": [],
    }
    for size in args.sizes:
        say(f"{size:,} entries: stages")
        results["stages"].append(stages(size, args.reps, sign_only, "sign of s - t"))
        results["stages"].append(stages(size, args.reps, params, "norm check"))
        for count in args.processes:
            say(f"{size:,} entries: norm check in {count} HE process(es)")
            results["processes"].append(in_processes(size, args.reps, params, count))
        if not args.no_network:
            results["round_trips"].append(round_trips(size, args.reps, args.hit_rate, params))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"\nmachine: {results['machine']}; CKKS N={params.ring_dimension}")
    print(
        "\n| answer | entries | build | gallery MB | encrypt | server (of which inner products) | decrypt | faiss "
        "| server / faiss | query B | answer B | keys B |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in results["stages"]:
        print(
            f"| {s['answer']} | {s['entries']:,} | {s['build_s']:.2f} s | {s['gallery_mb']:.0f} | {s['encrypt_ms']:.1f} ms | "
            f"{s['server_ms']:.1f} ms ({s['server_inner_products_ms']:.1f}) | {s['decrypt_ms']:.1f} ms | "
            f"{s['faiss_ms']:.3f} ms | {s['server_ms'] / s['faiss_ms']:.0f}x | {s['query_bytes']:,} | {s['answer_bytes']:,} | "
            f"{s['eval_key_bytes']:,} |"
        )
    if results["processes"]:
        print("\nNorm check as the node runs it ([federation] he_processes), in spawned processes:")
        print(
            "\n| entries | HE processes | server p50 (max) | x 1 process | first build (spawn + load) | answers matched |"
        )
        print("| --- | --- | --- | --- | --- | --- |")
        single = {p["entries"]: p["server_ms"] for p in results["processes"] if p["processes"] == 1}
        for p in results["processes"]:
            base = single.get(p["entries"])
            ratio = f"{p['server_ms'] / base:.2f}x" if base else ""
            print(
                f"| {p['entries']:,} | {p['processes']} | {p['server_ms']:.1f} ms ({p['server_ms_max']:.0f}) | {ratio} | "
                f"{p['build_s']:.1f} s | {p['matched']}/{p['asked']} |"
            )
        print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if results["round_trips"]:
        print(
            "\n| entries | private round trip p50 (max) | plain round trip p50 | private / plain | sealed query B | sealed answer B | keys once | hits found |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in results["round_trips"]:
            print(
                f"| {r['entries']:,} | {r['private_round_trip_ms_p50']:.1f} ms ({r['private_round_trip_ms_max']:.0f}) | "
                f"{r['plain_round_trip_ms_p50']:.1f} ms | {r['private_round_trip_ms_p50'] / r['plain_round_trip_ms_p50']:.0f}x | "
                f"{r['query_wire_bytes']:,} | {r['answer_wire_bytes']:,} | {r['keys_wire_bytes']:,} B, {r['keys_upload_s']:.2f} s | "
                f"{r['hits_found']}/{r['hits_sent']} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
