"""The disk reserve (#16): real blocks held in the node directory, released when the disk is full,
taken back when there is room; the ``watchnet node`` commands; what counts as "the disk is full".
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from node.config import HealthSettings, NodeConfig, StorageSettings
from node.storage.engine import make_engine
from node.storage.reserve import RESERVE_FILE, DiskReserve, NoRoomForReserve, is_disk_full
from protocol.errors import ConfigurationError
from tests.nodeproc import cli

MIB = 1 << 20


def test_the_reserve_is_written_out_in_real_blocks_and_released_once(tmp_path: Path) -> None:
    reserve = DiskReserve(tmp_path, 3, 0)
    assert reserve.state().state == "released" and not reserve.held
    assert reserve.restore() is True
    st = (tmp_path / RESERVE_FILE).stat()
    assert st.st_size == 3 * MIB
    assert st.st_blocks * 512 >= 3 * MIB, "allocated, not sparse"
    assert st.st_mode & 0o777 == 0o600
    with (tmp_path / RESERVE_FILE).open("rb") as f:
        head = f.read(MIB)
    assert head.count(0) < MIB // 64, "data a compressing filesystem cannot squeeze, not zeros"
    assert reserve.held and reserve.state().state == "held"
    assert reserve.restore() is False, "held already"
    assert not list(tmp_path.glob(f"{RESERVE_FILE}.*partial"))

    assert reserve.make_room() is True
    assert not (tmp_path / RESERVE_FILE).exists()
    state = reserve.state()
    assert (state.state, state.released_by_node) == ("released", True)
    assert reserve.make_room() is False, "released once: nothing more to give"
    assert reserve.release("again") == 0
    assert reserve.restore_if_room() is True and reserve.held
    assert reserve.state().released_by_node is False


def test_a_short_reserve_file_is_written_again_at_full_size(tmp_path: Path) -> None:
    (tmp_path / RESERVE_FILE).write_bytes(b"x" * 1000)
    reserve = DiskReserve(tmp_path, 2, 0)
    assert not reserve.held
    assert reserve.restore() is True and (tmp_path / RESERVE_FILE).stat().st_size == 2 * MIB


def test_no_room_for_the_reserve_and_the_margin_refuses_with_what_to_do(tmp_path: Path) -> None:
    reserve = DiskReserve(tmp_path, 1, 1 << 30)  # a 1 PiB margin: never here
    assert reserve.restore_if_room() is False
    with pytest.raises(NoRoomForReserve, match="free space first"):
        reserve.restore()
    assert not (tmp_path / RESERVE_FILE).exists()
    assert reserve.state().to_dict()["state"] == "released"


def test_a_reserve_of_zero_is_off(tmp_path: Path) -> None:
    reserve = DiskReserve(tmp_path, 0, 0)
    assert reserve.restore() is False and reserve.restore_if_room() is False
    assert reserve.state().state == "off" and not reserve.make_room()
    assert list(tmp_path.iterdir()) == []


def test_disk_full_is_recognised_from_the_os_sqlite_and_sqlalchemy(tmp_path: Path) -> None:
    with open("/dev/full", "wb", buffering=0) as full:
        with pytest.raises(OSError) as enospc:
            full.write(b"x")
    assert enospc.value.errno == errno.ENOSPC and is_disk_full(enospc.value)

    connection = sqlite3.connect(tmp_path / "small.db")
    connection.execute("CREATE TABLE t (b BLOB)")
    connection.commit()
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.OperationalError) as full_db:
        connection.execute("INSERT INTO t VALUES (?)", (os.urandom(MIB),))
    connection.close()
    assert is_disk_full(full_db.value)

    engine = make_engine(f"sqlite:///{tmp_path / 'wrapped.db'}")
    try:
        with engine.connect() as conn:
            conn.execute(text("CREATE TABLE t (b BLOB)"))
            conn.commit()
            pages = conn.execute(text("PRAGMA page_count")).scalar()
            conn.execute(text(f"PRAGMA max_page_count = {pages}"))
            with pytest.raises(OperationalError) as wrapped:
                conn.execute(text("INSERT INTO t VALUES (:b)"), {"b": os.urandom(MIB)})
            conn.rollback()
            conn.execute(text("PRAGMA query_only = ON"))
            with pytest.raises(OperationalError) as read_only:
                conn.execute(text("INSERT INTO t VALUES (x'00')"))
    finally:
        engine.dispose()
    assert is_disk_full(wrapped.value), "SQLAlchemy's wrapper of SQLITE_FULL"
    assert not is_disk_full(read_only.value), "a refusal that is not a full disk"
    assert not is_disk_full(ValueError("database or disk is full"))


def node_directory(tmp_path: Path, reserve_mb: int, min_free_mb: int = 0) -> Path:
    tmp_path.mkdir(exist_ok=True)
    config = NodeConfig(
        directory=tmp_path,
        node_id="chain-a",
        storage=StorageSettings(reserve_mb),
        health=HealthSettings(disk_free_min_mb=min_free_mb),
    )
    (tmp_path / "config.toml").write_text(config.to_toml(), encoding="utf-8")
    assert NodeConfig.load(tmp_path).storage.reserve_mb == reserve_mb
    return tmp_path


def test_the_node_commands_release_and_restore_the_reserve(tmp_path: Path) -> None:
    directory = node_directory(tmp_path, 2)
    assert "disk reserve of 2 MiB held" in cli("node", "restore-reserve", "--node", str(directory))
    assert (directory / RESERVE_FILE).stat().st_size == 2 * MIB
    assert "held already" in cli("node", "restore-reserve", "--node", str(directory))
    assert "2 MiB freed" in cli("node", "release-reserve", "--node", str(directory))
    assert not (directory / RESERVE_FILE).exists()
    assert "no disk reserve held" in cli("node", "release-reserve", "--node", str(directory))
    assert '"restored": true' in cli("node", "restore-reserve", "--node", str(directory), "--json")


def run_watchnet(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_node_commands_refuse_in_one_line_without_a_traceback(tmp_path: Path) -> None:
    directory = node_directory(tmp_path / "node", 1, min_free_mb=1 << 20)  # 1 TiB: never here
    no_room = run_watchnet("node", "restore-reserve", "--node", str(directory))
    assert no_room.returncode == 1 and "disk_full" in no_room.stderr and "free space first" in no_room.stderr
    missing = run_watchnet("node", "release-reserve", "--node", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "watchnet init" in missing.stderr
    for result in (no_room, missing):
        assert "Traceback" not in result.stderr + result.stdout
    usage = run_watchnet("node", "release-reserve", "--nodes", "x")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    helped = run_watchnet("node", "release-reserve", "--help")
    assert helped.returncode == 0 and "reserve" in helped.stdout


def test_storage_settings_are_bounded(tmp_path: Path) -> None:
    text_ = NodeConfig(directory=tmp_path, node_id="chain-a").to_toml()
    assert NodeConfig.from_toml(text_, tmp_path).storage.reserve_mb == 64
    with pytest.raises(ConfigurationError, match=r"storage\.reserve_mb"):
        NodeConfig.from_toml(text_.replace("reserve_mb = 64", "reserve_mb = -1"), tmp_path)
    with pytest.raises(ConfigurationError, match="unknown"):
        NodeConfig.from_toml(text_.replace("reserve_mb = 64", "reserved = 1"), tmp_path)


def test_workers_taking_the_reserve_at_once_do_not_trip_over_each_other(tmp_path: Path) -> None:
    """Every worker of a node holds a ``DiskReserve`` on the same directory; at start-up they take
    it at the same moment (the cluster test once saw one worker exit on the other's rename)."""
    script = (
        "import sys, time; from pathlib import Path; from node.storage.reserve import DiskReserve; "
        "r = DiskReserve(Path(sys.argv[1]), 32, 0); time.sleep(max(0.0, float(sys.argv[2]) - time.time())); "
        "r.restore(); print('ok')"
    )
    start = str(time.time() + 3.0)  # every process past its imports, then all at once
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path), start], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0] and outs == ["ok"] * 4
    assert (tmp_path / RESERVE_FILE).stat().st_size == 32 * MIB
    assert not list(tmp_path.glob(f"{RESERVE_FILE}.*partial"))
