"""Every command, given the usual mistakes, says what is wrong in one line and never a traceback.

A table of bad arguments (a URL where a directory goes and back, missing files, a file where a
directory goes, no terminal for a password) runs as a user would run them: the installed entry
point in a subprocess, no terminal attached. Then every command in the parser tree answers
``--help`` (exit 0) and refuses an unknown flag (exit 2), again without a traceback.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from node.cli.main import build_parser
from tests.nodeproc import NodeProcess

TIMEOUT = 120


def watchnet(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        env={**os.environ, "WATCHNET_TOKEN": "", "WATCHNET_URL": ""},
    )


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    a_file = root / "a-file"
    a_file.write_text("not a directory")
    (root / "empty").mkdir()
    (root / "n").mkdir()
    node = NodeProcess.create(root / "n")
    return {"file": a_file, "empty": root / "empty", "node": node.directory, "root": root}


def cases(p: dict[str, Path]) -> list[tuple[list[str], str | None, int, str]]:
    """(argv, stdin, exit code, words the message must hold)."""
    node, empty, a_file = str(p["node"]), str(p["empty"]), str(p["file"])
    down = "http://127.0.0.1:9"
    return [
        (["entry", "list", "--url", "ftp://x", "--token", "t"], None, 2, "not a node's address"),
        (["entry", "list", "--url", node, "--token", "t"], None, 2, "a node directory goes with --node"),
        (["entry", "list", "--url", "http://[::1", "--token", "t"], None, 2, "not a node's address"),
        (["entry", "list", "--url", "http://127.0.0.1:99999", "--token", "t"], None, 2, "bad port"),
        (["entry", "list", "--url", down, "--token", "t"], None, 1, "cannot reach the node"),
        (["entry", "list", "--url", down], None, 1, "no API token"),
        (["audit", "verify", "--node", node, "--token", "t"], None, 2, "--url"),
        (["audit", "verify", "--url", "localhost", "--token", "t"], None, 2, "not a node's address"),
        (["match", "--url", down, "--token", "t", "--image", "/no/such.jpg"], None, 1, "malformed: image"),
        (["face", "embed", "/no/such.jpg", "--out", str(p["root"] / "e")], None, 1, "malformed: image"),
        (["user", "add", "--node", node, "bob", "--role", "officer"], None, 2, "--password-stdin"),
        (["user", "add", "--node", node, "bob", "--role", "officer", "--password-stdin"], "", 1, "held no password"),
        (["user", "add", "--node", empty, "bob", "--role", "officer"], None, 1, "config.toml not found"),
        (["user", "token", "--node", node, "nobody", "--days", "400"], None, 1, "at most 365"),
        (["user", "token", "--node", node, "nobody", "--days", "x"], None, 2, "invalid int value"),
        (["user", "disable", "--node", node, "nobody"], None, 1, "no account 'nobody'"),
        (["demo", "--dir", a_file], None, 1, "not an empty directory"),
        (["serve", "--node", a_file], None, 1, "configuration"),
        (["manifest", "show", "--node", "/no/such/dir"], None, 1, "not found"),
        (["gov", "verify", "/no/such/manifest.json"], None, 1, "not found"),
        (["report", "--url", down, "--token", "t", "--period", "2026-Q9"], None, 1, "2026-Q9"),
        (["backup", "create", "--node", node, "--out", a_file], None, 1, "exists"),
        (["notice", "sign", "--node", node, "--out", str(p["root"] / "no" / "such" / "dir" / "x.pdf")], None, 1, ""),
    ]  # fmt: skip


def _assert_one_line(done: subprocess.CompletedProcess[str], code: int, words: str, argv: list[str]) -> None:
    where = f"watchnet {' '.join(argv)}"
    assert "Traceback" not in done.stderr + done.stdout, (where, done.stderr)
    assert done.returncode == code, (where, done.returncode, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines, (where, "says nothing")
    if lines[0].startswith("usage:"):  # argparse: the usage, then one error line
        assert sum("error:" in line for line in lines) == 1, (where, lines)
    else:
        assert len(lines) == 1, (where, lines)
    assert words in lines[-1], (where, lines[-1])


def test_common_mistakes_get_one_line_and_an_exit_code(places: dict[str, Path]) -> None:
    table = cases(places)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda c: watchnet(*c[0], stdin=c[1]), table))
    for (argv, _stdin, code, words), done in zip(table, results, strict=True):
        _assert_one_line(done, code, words, argv)


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        yield path
        return
    for name, child in actions[0].choices.items():
        yield from _commands(child, (*path, name))


def test_every_command_has_help_and_refuses_an_unknown_flag() -> None:
    commands = list(_commands(build_parser()))
    assert len(commands) > 40, commands
    runs = [(*c, "--help") for c in commands] + [(*c, "--no-such-flag") for c in commands]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda argv: watchnet(*argv), runs))
    for argv, done in zip(runs, results, strict=True):
        assert "Traceback" not in done.stderr + done.stdout, (argv, done.stderr)
        if argv[-1] == "--help":
            assert done.returncode == 0 and "usage: watchnet" in done.stdout, (argv, done.stderr)
        else:
            last = done.stderr.splitlines()[-1]
            assert done.returncode == 2 and ("--no-such-flag" in last or "are required" in last), (argv, last)
