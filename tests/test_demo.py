"""``watchnet demo`` as a newcomer runs it: every step ok, one JSON object, processes cleaned up.

The main test clears ``WATCHNET_DEMO_DATABASE_SERVER`` (CI sets it, to run the group tests on
PostgreSQL) so it runs the README's demo exactly: SQLite in each node's directory. The Ctrl-C test
keeps the environment, so in CI it also shows the demo's databases dropped when it stops.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from node.config import NodeConfig
from node.demo.network import DATABASE_SERVER_VARIABLE
from tests.test_demo_lines import DUMP

STEPS = [
    "manifest",
    "register",
    "query-private",
    "query-match",
    "query-passer-by",
    "refuse-purpose",
    "refuse-outsider",
    "refuse-replay",
    "refuse-wrong-key",
    "correct",
    "delete-and-receipts",
    "witness",
    "suspend",
]


@pytest.mark.timeout(300)
def test_the_demo_runs_every_step_ok_and_leaves_no_process(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "node.cli.main", "demo", "--json", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
        env={k: v for k, v in os.environ.items() if k != DATABASE_SERVER_VARIABLE},
    )
    summary = json.loads(run.stdout)
    assert run.returncode == 0, [s for s in summary["steps"] if not s["ok"]]
    assert [s["name"] for s in summary["steps"]] == STEPS
    assert all(s["ok"] for s in summary["steps"])
    assert {n["node_id"] for n in summary["nodes"]} == {"chain-a", "chain-b", "chain-c", "outsider"}
    assert "[ok] delete-and-receipts" in run.stderr
    org = summary["organisation_console"]  # watchnet demo --keep prints it: sign in, admit the outsider
    assert org["url"] == summary["organisation"] + "/console"
    assert org["users"]["sec1"] == "secretariat" and org["users"]["kh2"] == "key-holder"
    assert org["to_admit"]["node_id"] == "outsider" and org["to_admit"]["endpoint"].startswith(
        "http://127.0.0.1:"
    )
    assert (tmp_path / "demo" / "org" / "org.db").is_file()
    for step in summary["steps"]:  # sentences, not Python dumps (tests/test_demo_lines.py)
        assert not DUMP.search(step["summary"]), step["summary"]
    witness = next(s for s in summary["steps"] if s["name"] == "witness")
    print("\n" + witness["summary"])
    audited = witness["details"]["audit"]
    assert audited["ok"] and audited["witnesses"]["required"] == 1  # the demo group's policy.witness
    assert set(audited["witnesses"]["cosigned_by"]) <= {"chain-b", "chain-c", "organisation"}
    assert len(audited["witnesses"]["cosigned_by"]) >= 1
    for node_id in ("chain-a", "chain-b", "chain-c", "outsider"):
        assert (tmp_path / "demo" / node_id / "watchnet.db").is_file(), f"{node_id} is not on SQLite"
    leftover = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True, check=False
    )
    assert leftover.stdout.strip() == "", "the demo left processes running"


@pytest.mark.timeout(300)
def test_ctrl_c_stops_every_process_of_a_kept_demo_network(tmp_path: Path) -> None:
    import signal

    where = tmp_path / "kept"
    process = subprocess.Popen(
        [sys.executable, "-m", "node.cli.main", "demo", "--keep", "--dir", str(where)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "press Ctrl-C" in line:
                break
        running = subprocess.run(["pgrep", "-f", str(where)], capture_output=True, text=True, check=False)
        assert len(running.stdout.split()) == 6, "".join(lines)  # the demo, gov serve and four nodes
        printed = "".join(lines)
        console = re.search(r"chain-a\s+\S+\s+console (http://\S+/console)", printed)
        password = re.search(r"password (\S+)", printed)
        assert console and password, printed
        assert signs_in(console.group(1), "reg1", password.group(1)).endswith("/console/registrar")
        urls = [NodeConfig.load(where / n).effective_database_url for n in ("chain-a", "outsider")]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    leftover = subprocess.run(["pgrep", "-f", str(where)], capture_output=True, text=True, check=False)
    assert leftover.stdout.strip() == ""
    if os.environ.get(DATABASE_SERVER_VARIABLE):
        assert all(url.startswith("postgresql") for url in urls), urls
        assert not existing_databases(urls), "the demo left its databases on the server"
    else:
        assert all(url.startswith("sqlite") for url in urls), urls


def existing_databases(urls: list[str]) -> list[str]:
    """Which of these PostgreSQL databases still exist on their server."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    names = [make_url(url).database for url in urls]
    engine = create_engine(make_url(urls[0]).set(database="postgres"))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT datname FROM pg_database WHERE datname = ANY(:n)"), {"n": names})
            return [row[0] for row in rows]
    finally:
        engine.dispose()


def signs_in(console: str, username: str, password: str) -> str:
    """Sign in to a printed console URL with a printed login, as a newcomer's browser would."""
    import requests

    with requests.Session() as browser:
        form = browser.get(f"{console}/login", timeout=10)
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert form.status_code == 200 and token, form.text[:300]
        answer = browser.post(
            f"{console}/login",
            data={"username": username, "password": password, "csrf": token.group(1)},
            allow_redirects=False,
            timeout=10,
        )
        assert answer.status_code == 303, answer.text[:300]
        landing = browser.get(f"{console.rsplit('/console', 1)[0]}{answer.headers['Location']}", timeout=10)
        assert landing.status_code == 200, landing.text[:300]
        return landing.url.split("?")[0]
