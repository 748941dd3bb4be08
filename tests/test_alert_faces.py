"""The operator's decision needs faces (#18): crops, the owner's reference, sightings, erasure.

Real processes on 127.0.0.1 (``LocalNetwork``): chain-a registers from a photo, chain-b's camera
query matches it. chain-b's alert page (the console, signed in over HTTP as a browser is) must
show the camera's crop, and chain-a's registered crop only once the manifest lists
``face-image``; chain-a itself must refuse the sealed ``reference-face-request`` while it is not
listed, for an entry it never named to chain-b, and for a deleted entry. Two gates within the
merge window make one alert with two sightings (time in Japanese, in the node's zone; the
site's name). chain-b reads its wall clock through ``WATCHNET_CLOCK_OFFSET_FILE``
(``node/clock.py``): moved 73 hours on, its ``alert_faces`` duty erases the crops, destroys the
alert's key and audits it, with no sleep of 72 hours.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import requests
from sqlmodel import Session, col, select

from governance.manifest import Label, LocalizedText, Manifest
from node.casework.registers import review_alert
from node.config import AlertSettings, NodeConfig
from node.demo.network import LocalNetwork, LocalNode, wait_for
from node.files import PRIVATE_FILE, write_atomic
from node.records.alert_faces import AlertFaces, AlertHit, CropErased, Seen
from node.records.record_keys import RecordKeys
from node.records.shredding import ORPHAN_AGE_SECONDS, shred_orphans
from node.records.vault import Vault
from node.storage.engine import make_engine
from node.storage.migrate import upgrade
from node.storage.models import AlertSighting, AuditRecord
from protocol.canonical import b64url_encode
from protocol.errors import WatchnetError
from protocol.keys import DataKey
from protocol.message import PeerKeys, compose_sealed, decode_body, open_sealed
from protocol.reference import ReferenceFace, ReferenceFaceRequest
from tests.test_console import CSRF_RE, photo

PROCEDURE = (
    LocalizedText("声をかけず、責任者に連絡する", "Do not approach; call the officer on duty"),
    LocalizedText(
        "責任者が本人と確認したら、店長に報告する", "Once the officer confirms, report to the store manager"
    ),
)
DATA_URI_RE = re.compile(
    r'<figure class="crop" id="(camera|reference)-face" data-state="([a-z_-]+)">\s*(?:<img src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)")?'
)
SIGHTING_RE = re.compile(
    r'<tr data-sighting="(sgt-[0-9a-f]+)" data-site="([^"]*)" data-gate="([^"]*)">\s*<td>(\d+)</td>\s*'
    r'<td class="time">([^<]+)</td>\s*<td class="place">([^<]*)'
)


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalNetwork, Path]]:
    root = tmp_path_factory.mktemp("faces")
    offset = root / "clock-offset"
    offset.write_text("0\n")
    network = LocalNetwork(root, ["chain-a", "chain-b"], sync_interval="1s", database_server=None)
    try:
        network.create()
        b = network.node("chain-b")
        config = NodeConfig.load(b.directory)
        alerts = AlertSettings(erase_interval=timedelta(seconds=1), procedure=PROCEDURE)
        write_atomic(
            b.directory / "config.toml", replace(config, alerts=alerts).to_toml().encode(), mode=PRIVATE_FILE
        )
        network.start(only=["chain-a"])
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("WATCHNET_CLOCK_OFFSET_FILE", str(offset))
            b.start()
        yield network, offset
    finally:
        network.destroy()


def register(a: LocalNode, image: bytes, reference: str) -> str:
    status, proposed = a.call(
        "POST",
        "/v1/entries",
        "reg1",
        {
            "image": b64url_encode(image),
            "category": "shoplifting",
            "evidence": {"kind": "police-report", "reference": reference},
            "incident_date": "2026-11-01",
            "site": "shibuya",
        },
    )
    assert status == 201, proposed
    status, approved = a.call("POST", f"/v1/entries/{proposed['entry_id']}/approve", "off1")
    assert status == 200 and approved["status"] == "active", approved
    return str(proposed["entry_id"])


def larger(image: bytes) -> bytes:
    """The photo at twice its size (its face is below the registration rules' 80 px otherwise)."""
    decoded = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
    ok, encoded = cv2.imencode(".jpg", cv2.resize(decoded, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC))
    assert ok
    return encoded.tobytes()


def signed_in(node: LocalNode, network: LocalNetwork, username: str = "op1") -> requests.Session:
    """A browser's cookie jar signed in to ``node``'s console."""
    browser = requests.Session()
    page = browser.get(f"{node.url}/console/login?lang=ja", timeout=30)
    csrf = CSRF_RE.search(page.text)
    assert csrf, page.text[:300]
    answer = browser.post(
        f"{node.url}/console/login?lang=ja",
        data={"csrf": csrf.group(1), "username": username, "password": network.password},
        timeout=30,
    )
    assert answer.status_code == 200 and "/console/login" not in answer.url, answer.url
    return browser


def alert_page(
    node: LocalNode, browser: requests.Session, alert_id: str
) -> tuple[requests.Response, dict[str, Any]]:
    """The alert page and what it shows of each face: its state and, when shown, the JPEG."""
    page = browser.get(f"{node.url}/console/operator/alerts/{alert_id}?lang=ja", timeout=60)
    assert page.status_code == 200, page.text[:500]
    faces = {
        which: (state, base64.b64decode(data) if data else None)
        for which, state, data in DATA_URI_RE.findall(page.text)
    }
    assert set(faces) == {"camera", "reference"}, page.text[:2000]
    return page, faces


def ask_owner(network: LocalNetwork, body: ReferenceFaceRequest) -> tuple[int, Any]:
    """chain-b's sealed ``reference-face-request`` to chain-a, sent directly: chain-a's own answer."""
    a, b = network.node("chain-a"), network.node("chain-b")
    manifest = network.current_manifest()
    owner = manifest.member("chain-a")
    assert owner is not None
    sealed = compose_sealed(
        sender="chain-b",
        recipient="chain-a",
        manifest_version=manifest.version,
        purpose="crime-prevention",
        body=body,
        issued_at=datetime.now(UTC),
        signing_key=b.signing_key(),
        sender_key=b.encryption_key(),
        recipient_key=owner.encryption_key,
    )
    request = urllib.request.Request(f"{a.url}/v1/peer/reference-face", data=sealed, method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    opened = open_sealed(
        raw,
        recipient_id="chain-b",
        recipient_key=b.encryption_key(),
        lookup_sender=lambda node_id: (
            PeerKeys(owner.signing_key, owner.encryption_key) if node_id == "chain-a" else None
        ),
    )
    return 200, decode_body(opened.payload, {ReferenceFace.TYPE: ReferenceFace})


def share_face_images(manifest: Manifest) -> Manifest:
    item = Label(
        "face-image",
        LocalizedText(
            "登録時の顔画像（照合結果の目視確認のため）",
            "The registered face image (to confirm a match by sight)",
        ),
    )
    return manifest.with_changes(
        joint_use=replace(manifest.joint_use, items=(*manifest.joint_use.items, item))
    )


def adopt(network: LocalNetwork, version: int) -> None:
    for node_id in ("chain-a", "chain-b"):
        node = network.node(node_id)
        assert wait_for(
            lambda node=node: node.call("POST", "/v1/manifest/refresh", "adm1")[1].get("version") == version,
            30,
            0.5,
        ), node_id


def sightings(page: str) -> list[tuple[str, ...]]:
    return SIGHTING_RE.findall(page)


def test_a_peers_alert_shows_both_faces_only_while_the_manifest_shares_face_images(
    group: tuple[LocalNetwork, Path],
) -> None:
    network, _ = group
    a, b = network.node("chain-a"), network.node("chain-b")
    entry_id = register(a, photo(), "TKY-2026-1201")
    never_matched = register(a, larger(photo("gdp.jpg")), "TKY-2026-1202")
    status, found = b.call(
        "POST", "/v1/query", "op1", {"image": b64url_encode(photo()), "site": "ikebukuro", "gate": "gate-1"}
    )
    assert status == 200 and [m["entry_id"] for m in found["matches"]] == [entry_id], found
    alert_id = found["matches"][0]["alert_id"]
    operator = signed_in(b, network)

    # the demo group shares no face images: the camera's face only, and chain-a refuses too
    page, faces = alert_page(b, operator, alert_id)
    assert page.headers["Cache-Control"] == "no-store"
    assert faces["camera"][0] == "shown" and faces["camera"][1][:3] == b"\xff\xd8\xff"
    assert faces["reference"] == ("item_not_shared", None), faces["reference"][0]
    assert "共同利用の項目に含まれない項目です" in page.text
    asked = ReferenceFaceRequest(alert_id=alert_id, entry_id=entry_id, entry_version=1)
    status, refused = ask_owner(network, asked)
    assert (status, refused["error"]) == (403, "item_not_shared"), refused

    version = network.update(share_face_images).payload.version
    adopt(network, version)
    page, faces = alert_page(b, operator, alert_id)
    assert faces["reference"][0] == "shown" and faces["reference"][1][:3] == b"\xff\xd8\xff", faces[
        "reference"
    ][0]
    status, answer = ask_owner(network, asked)
    assert status == 200 and answer.entry_id == entry_id and answer.face_image_jpeg == faces["reference"][1]
    # neither face is anywhere in chain-b's directory in the clear: the camera's is sealed, the
    # owner's was never written (database, its WAL, the key store, the logs)
    for path in (p for p in b.directory.rglob("*") if p.is_file()):
        content = path.read_bytes()
        assert faces["reference"][1] not in content and faces["camera"][1] not in content, path
    assert "声をかけず、責任者に連絡する" in page.text and page.text.index(
        '<ol id="procedure">'
    ) < page.text.index('value="confirmed"')
    # a face goes only to a member told of a match on that entry
    status, refused = ask_owner(
        network, ReferenceFaceRequest(alert_id=alert_id, entry_id=never_matched, entry_version=1)
    )
    assert (status, refused["error"]) == (403, "no_recent_match"), refused
    # another role does not see the faces
    officer = signed_in(b, network, "off1")
    assert officer.get(f"{b.url}/console/operator/alerts/{alert_id}?lang=ja", timeout=30).status_code == 403

    status, deleted = a.call(
        "POST", f"/v1/entries/{entry_id}/delete", "off1", {"reason": "data-subject-request"}
    )
    assert status == 200, deleted
    status, refused = ask_owner(network, asked)
    assert (status, refused["error"]) == (404, "entry_not_found"), refused
    # chain-b withdraws the alert when it follows chain-a's log; its camera crop goes with it
    assert wait_for(lambda: alert_page(b, operator, alert_id)[1]["camera"][0] == "withdrawn", 30, 0.5)
    page, faces = alert_page(b, operator, alert_id)
    assert faces["reference"] == ("withdrawn", None)
    key = b.directory / "keys" / "records" / f"{alert_id}.key"
    assert wait_for(lambda: not key.exists(), 15, 0.25), "the withdrawn alert's key outlived it"


def test_two_gates_within_minutes_are_one_alert_with_two_sightings(group: tuple[LocalNetwork, Path]) -> None:
    network, _ = group
    b = network.node("chain-b")
    entry_id = register(b, photo(), "TKY-2026-1210")
    ids = []
    for gate in ("gate-1", "gate-2", "gate-2"):
        status, found = b.call(
            "POST", "/v1/match", "op1", {"image": b64url_encode(photo()), "site": "ikebukuro", "gate": gate}
        )
        assert status == 200 and [m["entry_id"] for m in found["matches"]] == [entry_id], found
        ids.append(found["matches"][0]["alert_id"])
    assert len(set(ids)) == 1, ids
    operator = signed_in(b, network)
    page, faces = alert_page(b, operator, ids[0])
    seen = sightings(page.text)
    assert [(s[1], s[2], s[3]) for s in seen] == [
        ("ikebukuro", "gate-1", "1"),
        ("ikebukuro", "gate-2", "2"),
    ], seen
    assert all(re.fullmatch(r"\d{4}年\d{1,2}月\d{1,2}日 \d{1,2}:\d{2}:\d{2} JST", s[4]) for s in seen), seen
    assert all(s[5].strip() == "池袋店" for s in seen), seen
    assert faces["camera"][0] == "shown" and faces["reference"][0] == "shown"
    status, listed = b.call("GET", "/v1/alerts", "op1")
    assert [a["alert_id"] for a in listed["alerts"] if a["entry_id"] == entry_id] == ids[:1], listed


def test_camera_crops_are_erased_when_the_review_window_ends(group: tuple[LocalNetwork, Path]) -> None:
    network, offset = group
    b = network.node("chain-b")
    _, listed = b.call("GET", "/v1/alerts", "op1")
    open_alerts = [a["alert_id"] for a in listed["alerts"] if a["status"] == "open"]
    assert open_alerts, listed
    alert_id = open_alerts[0]
    key = b.directory / "keys" / "records" / f"{alert_id}.key"
    database = b.directory / "watchnet.db"

    def held() -> int:
        with sqlite3.connect(database) as db:
            return int(
                db.execute(
                    "SELECT count(*) FROM alert_sighting WHERE alert_id = ? AND probe_ct IS NOT NULL",
                    (alert_id,),
                ).fetchone()[0]
            )

    assert key.exists() and held() == 2
    offset.write_text(f"{71 * 3600}\n")
    time.sleep(3.5)  # the offset is read again at most once a second; the duty passes every second
    assert key.exists() and held() == 2, "71 hours is inside the 72-hour window"
    offset.write_text(f"{73 * 3600}\n")
    try:
        assert wait_for(lambda: not key.exists(), 20, 0.25), "the alert's key outlived its review window"
        assert held() == 0
        operator = signed_in(b, network)
        page, faces = alert_page(b, operator, alert_id)
        assert faces["camera"] == ("window", None)
        assert "確認期間が過ぎたため、カメラ画像は消去されました" in page.text
        with sqlite3.connect(database) as db:
            erasures = db.execute(
                "SELECT actor, outcome FROM audit WHERE action = 'alert.face_erase' AND target = ?",
                (alert_id,),
            ).fetchall()
        assert erasures == [("node", "window")], erasures
    finally:
        offset.write_text("0\n")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"review_window": "30m"}, r"alerts\.review_window: 30m outside \[1h, 14d\]"),
        ({"review_window": "15d"}, r"alerts\.review_window: 15d outside \[1h, 14d\]"),
        ({"merge_window": "2h"}, r"alerts\.merge_window: 2h outside \[30s, 1h\]"),
        ({"erase_interval": "0s"}, r"alerts\.erase_interval: 0s outside \[1s, 1h\]"),
        ({"review_window": 72}, r"alerts\.review_window"),
        (
            {"procedure": [{"ja": "責任者に連絡する", "en": ""}]},
            r"alerts\.procedure\[0\]: both 'ja' and 'en'",
        ),
        ({"procedure": [{"ja": "責任者に連絡する"}]}, r"alerts\.procedure\[0\]"),
        ({"procedure": [{"ja": "a", "en": "b"}] * 13}, r"alerts\.procedure: 13 items, limit 12"),
        ({"review_window_hours": 72}, r"alerts: unknown fields \['review_window_hours'\]"),
    ],
)
def test_bad_alert_settings_are_refused_with_the_field_and_the_bounds(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(WatchnetError, match=message):
        AlertSettings.from_dict(settings)


def test_alert_settings_round_trip_through_the_config_file(tmp_path: Path) -> None:
    settings = AlertSettings(
        review_window=timedelta(hours=24), merge_window=timedelta(minutes=3), procedure=PROCEDURE
    )
    config = replace(NodeConfig(directory=tmp_path, node_id="chain-b"), alerts=settings)
    again = NodeConfig.from_toml(config.to_toml(), tmp_path).alerts
    assert again == settings and [s.ja for s in again.procedure] == [s.ja for s in PROCEDURE]
    assert AlertSettings().review_window == timedelta(hours=72) and AlertSettings().merge_window == timedelta(
        minutes=5
    )


def test_sightings_merge_and_crops_erase_on_the_stores_own_clock(tmp_path: Path, database_url: str) -> None:
    """``AlertFaces`` on a real SQLite and PostgreSQL store, times given: what merges, what is
    kept, what goes."""
    engine = make_engine(database_url)
    upgrade(engine)
    vault = Vault(DataKey(b"\x05" * 32), RecordKeys(tmp_path / "records", DataKey(b"\x05" * 32)))
    faces = AlertFaces(engine, vault, AlertSettings(), threading.RLock())
    hit = AlertHit(
        owner="chain-a", entry_id="ent-" + "1" * 20, entry_version=1, band="strong", category="theft"
    )
    t0 = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
    crop = b"\xff\xd8\xff camera crop"

    def seen(site: str, gate: str, minutes: float, image: bytes | None = crop) -> str:
        with Session(engine) as session:
            alert, _ = faces.raise_in(
                session, hit, Seen(site, gate, t0 + timedelta(minutes=minutes), image), operator="acct-op"
            )
            session.commit()
            return alert.id

    first = seen("ikebukuro", "gate-1", 0)
    assert seen("ikebukuro", "gate-1", 0.5) == first, "frames of one pass add nothing"
    assert seen("ikebukuro", "gate-2", 3) == first
    assert seen("ueno", "gate-1", 7.5) == first, "within 5 minutes of the last sighting"
    later = seen("ikebukuro", "gate-1", 13)
    assert later != first, "more than 5 minutes after the last sighting: a new alert"
    assert [(s["site"], s["gate"]) for s in faces.sightings(first)] == [
        ("ikebukuro", "gate-1"),
        ("ikebukuro", "gate-2"),
        ("ueno", "gate-1"),
    ]
    assert faces.camera_crop(first) == crop
    assert seen("ikebukuro", "gate-3", 14, image=None) == later and not faces.sightings(later)[1]["has_crop"]

    review_alert(
        engine,
        faces.write_lock,
        alert_id=later,
        outcome="false-match",
        staff="acct-op",
        now=t0 + timedelta(minutes=14.5),
        vault=vault,
    )
    assert not any(s["has_crop"] for s in faces.sightings(later)), "a false match is erased at once"
    assert seen("ikebukuro", "gate-3", 14.8) == later, "the same pass after the verdict: nothing new"
    assert not any(s["has_crop"] for s in faces.sightings(later)) and len(faces.sightings(later)) == 2
    third = seen("ikebukuro", "gate-4", 15)
    assert third not in (first, later), "a judged alert takes no new sighting"

    # an alert key older than the orphan sweep's hour is kept while its crops are
    for alert_id in (first, third):
        old = time.time() - ORPHAN_AGE_SECONDS - 60
        os.utime(tmp_path / "records" / f"{alert_id}.key", (old, old))
    assert shred_orphans(engine, vault) == []
    assert faces.erase_due(t0 + timedelta(hours=71, minutes=59)) == []
    assert faces.erase_due(t0 + timedelta(hours=72)) == [first]
    with pytest.raises(CropErased):
        faces.camera_crop(first)
    assert faces.face_state(first)["erased_because"] == "window"  # type: ignore[index]
    assert faces.camera_crop(third) == crop
    assert faces.erase_due(t0 + timedelta(hours=73)) == [third]
    assert faces.erase_due(t0 + timedelta(hours=74)) == [], "erased once"
    assert vault.records.record_ids() == []
    with Session(engine) as session:
        held = session.exec(select(AlertSighting).where(col(AlertSighting.probe_ct).is_not(None))).all()
        audited = session.exec(
            select(AuditRecord.target, AuditRecord.outcome, AuditRecord.actor).where(
                AuditRecord.action == "alert.face_erase"
            )
        ).all()
    engine.dispose()
    assert held == []
    assert sorted(audited) == sorted(
        [(first, "window", "node"), (later, "false-match", "acct-op"), (third, "window", "node")]
    )
