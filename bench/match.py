"""Local match latency and throughput through the HTTP endpoint, beside bare faiss on the same vectors.

For each gallery size the script starts a real node process (``--serve``) whose index holds N
random unit vectors, then, from this process, measures POST /v1/match with one face per request:
latency at concurrency 1 (p50/p99) and throughput at concurrency 16. In the same run it times
bare faiss ``IndexFlatIP`` search of the same queries on the same gallery (one thread), and
prints the ratio and the milliseconds the endpoint adds (auth, audit record, JSON, HTTP).

    python bench/match.py                 # 1k, 10k, 100k
    python bench/match.py --sizes 1000 10000 --requests 300
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DIM = 512


def gallery(n: int) -> np.ndarray:
    rng = np.random.default_rng(12345)
    g = rng.standard_normal((n, DIM)).astype(np.float32)
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def queries(n: int) -> np.ndarray:
    rng = np.random.default_rng(777)
    q = rng.standard_normal((n, DIM)).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(node_dir: Path, size: int, port: int) -> None:
    from aiohttp import web

    from node.app.server import build_app
    from node.context import NodeContext
    from protocol.embedding import Embedding

    context = NodeContext.load(node_dir)
    app = build_app(context, sweep=False)
    vectors = gallery(size)
    context.registry.index.replace_all(
        (f"bench-{i:07d}", Embedding(v.astype("<f4").tobytes())) for i, v in enumerate(vectors)
    )
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def make_node(root: Path) -> tuple[Path, str]:
    from datetime import UTC, datetime

    from tests.factories import KEYS, make_manifest, signed_manifest
    from tests.nodeproc import cli

    manifest = root / "manifest.json"
    manifest.write_bytes(
        signed_manifest(
            make_manifest(now=datetime.now(UTC).replace(microsecond=0)), KEYS[0], KEYS[1]
        ).to_bytes()
    )
    node = root / "node"
    roots = [a for k in KEYS for a in ("--root-keyid", k.keyid)]
    cli("init", str(node), "--node-id", "chain-a", "--manifest", str(manifest), *roots)
    (node / "config.toml").write_text(
        (node / "config.toml")
        .read_text()
        .replace("requests_per_minute = 600", "requests_per_minute = 100000")
    )
    cli(
        "user",
        "add",
        "--node",
        str(node),
        "bench-operator",
        "--role",
        "operator",
        "--password-stdin",
        stdin="benchmark password\n",
    )
    return node, cli("user", "token", "--node", str(node), "bench-operator").strip()


def bare_faiss(size: int, q: np.ndarray) -> list[float]:
    import faiss

    faiss.omp_set_num_threads(1)
    index = faiss.IndexFlatIP(DIM)
    index.add(gallery(size))
    times = []
    for row in q:
        t = time.perf_counter()
        index.search(row.reshape(1, -1), 8)
        times.append((time.perf_counter() - t) * 1000)
    return times


async def http_latency(
    url: str, token: str, bodies: list[bytes], concurrency: int
) -> tuple[list[float], float]:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    times: list[float] = []
    queue = list(bodies)

    async with aiohttp.ClientSession(headers=headers) as session:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                t = time.perf_counter()
                async with session.post(f"{url}/v1/match", data=body) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"match answered {response.status}")
                times.append((time.perf_counter() - t) * 1000)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return times, len(bodies) / elapsed


def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--serve", nargs=3, metavar=("NODE_DIR", "SIZE", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]), int(args.serve[2]))
        return 0

    import json

    from protocol.embedding import Embedding

    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    q = queries(args.requests)
    bodies = [
        json.dumps({"embeddings": [Embedding(row.astype("<f4").tobytes()).to_str()]}).encode() for row in q
    ]
    print(
        f"{'entries':>8} | {'faiss p50':>9} {'p99':>7} | {'http p50':>8} {'p99':>7} | {'adds p50':>8} | {'ratio':>6} | {'req/s c=16':>10}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        node_dir, token = make_node(Path(tmp))
        for size in args.sizes:
            faiss_ms = bare_faiss(size, q)
            port = free_port()
            server = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(node_dir), str(size), str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                url = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                        break
                    except OSError:
                        time.sleep(0.2)
                asyncio.run(http_latency(url, token, bodies[:50], 1))
                http_ms, _ = asyncio.run(http_latency(url, token, bodies, 1))
                _, throughput = asyncio.run(http_latency(url, token, bodies, 16))
            finally:
                server.terminate()
                server.wait(timeout=30)
            adds = statistics.median(http_ms) - statistics.median(faiss_ms)
            print(
                f"{size:>8} | {p(faiss_ms, 50):>7.2f}ms {p(faiss_ms, 99):>5.2f}ms | {p(http_ms, 50):>6.2f}ms "
                f"{p(http_ms, 99):>5.2f}ms | {adds:>6.2f}ms | {p(http_ms, 50) / p(faiss_ms, 50):>5.1f}x | {throughput:>10.0f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
