"""``watchnet demo`` as a newcomer runs it: every step ok, one JSON object, processes cleaned up."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
    )
    summary = json.loads(run.stdout)
    assert run.returncode == 0, [s for s in summary["steps"] if not s["ok"]]
    assert [s["name"] for s in summary["steps"]] == STEPS
    assert all(s["ok"] for s in summary["steps"])
    assert {n["node_id"] for n in summary["nodes"]} == {"chain-a", "chain-b", "chain-c", "outsider"}
    assert "[ok] delete-and-receipts" in run.stderr
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
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    leftover = subprocess.run(["pgrep", "-f", str(where)], capture_output=True, text=True, check=False)
    assert leftover.stdout.strip() == ""


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
