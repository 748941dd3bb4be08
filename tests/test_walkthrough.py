"""The README's accountability walkthrough, run as written on the demo network (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(400)
def test_notice_sign_requests_report_and_pia_on_the_demo_network(tmp_path: Path) -> None:
    run = subprocess.run(
        ["bash", str(ROOT / "deploy" / "accountability-walkthrough.sh"), str(tmp_path)],
        env={**os.environ, "WATCHNET_BIN": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        timeout=380,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "Notice: face-recognition security cameras in operation" in out
    assert "disclosed" in out and "granted" in out and "signed receipt(s) attached" in out
    assert (tmp_path / "sign.pdf").read_bytes()[:5] == b"%PDF-"
    assert "<svg" in (tmp_path / "report.html").read_text()
    assert "To complete" in (tmp_path / "pia.md").read_text()
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False)
    assert leftover.stdout.strip() == "", "the walkthrough left processes running"
