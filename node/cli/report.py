"""``watchnet report``, ``watchnet gov report`` and ``watchnet pia``: transparency and the PIA record.

- ``watchnet report --period 2026-Q4`` asks a running node for its signed report (``GET
  /v1/report``), checks the node's signature, and prints the key figures, writes the signed JSON
  the organisation collects (``--json --out``) or the page with charts (``--html --out``).
- ``watchnet gov report --period 2026-Q4 --in a.json b.json --manifest manifest.json`` is the
  organisation's side: every member's report must be signed by the key the manifest lists for
  that member, then the counts are added up into the group report (optionally signed ``--key``).
- ``watchnet pia --node DIR`` fills ``docs/pia-template.md`` with what the node directory says
  (config, trusted manifest, written rules): data items, flows, retention, safeguards, model and
  licence, members, purposes, administrator. The operator completes the rest and signs it.
  Like ``watchnet notice``, it reads no database and no key.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from governance.manifest import Manifest, MemberStatus
from governance.notice import INSIGHTFACE_PACKS
from governance.provision import LEGAL_BASES
from governance.report import (
    TransparencyReport,
    aggregate,
    parse_period,
    verify_member_report,
)
from governance.requests import DEFAULT_DEADLINE, IDENTITY_CHECKS, RefusalGround, RequestKind
from governance.roles import NODE_ROLES, ORG_ACTIONS, Action, permitted
from governance.rules import RegistrationRules
from node.cli.client import fetch, url_argument
from node.config import MANIFEST_FILE, RULES_FILE, NodeConfig, load_manifest_file
from node.files import write_atomic
from protocol.canonical import sha256_hex
from protocol.errors import ConfigurationError, MalformedError, SignatureError, WatchnetError
from protocol.fields import format_duration, format_time
from protocol.keys import PublicSigningKey
from protocol.signed import SignedDocument

__all__ = ["DEFAULT_TEMPLATE", "fill_pia", "register"]

PLACEHOLDER_RE = re.compile(r"\{\{([a-z_]+)\}\}")
DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "docs" / "pia-template.md"
"""The template in the source tree (an editable install); ``--template`` names another copy."""


# -- watchnet report --------------------------------------------------------------------------


def _get(args: argparse.Namespace, path: str, *, auth: bool = True) -> bytes:
    return fetch(args, "GET", path, auth=auth, timeout=120)


def _pretty(document: SignedDocument[TransparencyReport]) -> bytes:
    return (json.dumps(document.to_dict(), indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode(
        "utf-8"
    )


def _emit(out: str | None, data: bytes) -> None:
    if out:
        write_atomic(Path(out), data)
    else:
        print(data.decode("utf-8"), end="")


def _sum(*tallies: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for tally in tallies:
        for key, n in tally.items():
            out[key] = out.get(key, 0) + n
    return out


def summary(report: TransparencyReport) -> str:
    """The key figures and the tallies behind them, as plain text."""
    from node.reporting.report_html import key_figures

    state = "complete" if report.complete else "so far (the period has not ended)"
    lines = [
        f"transparency report {report.period.label} ({format_time(report.period.start)} .. "
        f"{format_time(report.period.end)}) of {report.issuer}, {report.scope.value} report, {state}",
        f"members counted: {', '.join(report.members)}",
    ]
    lines += [f"  {n:>8}  {label}" for label, n in key_figures(report)]
    tallies = [
        ("deleted, by reason", report.entries.deleted),
        ("queries sent, by purpose", report.queries.sent),
        ("queries answered, by purpose", report.queries.answered),
        ("refusals, by code", _sum(report.refusals.requests, report.refusals.peer_data)),
        ("third-party requests provided, by legal basis", report.provisions.provided),
        ("data-subject requests received, by kind", report.subject_requests.received),
        ("complaints received, by category", report.complaints.received),
    ]
    for title, tally in tallies:
        shown = ", ".join(f"{k} {v}" for k, v in sorted(tally.items()) if v)
        lines.append(f"{title}: {shown or 'none'}")
    return "\n".join(lines) + "\n"


def cmd_report(args: argparse.Namespace) -> int:
    period = parse_period(args.period)
    fmt = "html" if args.html else "json"
    lang = f"&lang={args.lang}" if args.html else ""
    raw = _get(args, f"/v1/report?period={urllib.parse.quote(period.label)}&format={fmt}{lang}")
    if args.html:
        _emit(args.out, raw)
        return 0
    document = SignedDocument.from_bytes(raw, TransparencyReport)
    node = json.loads(_get(args, "/v1/node", auth=False))
    key = PublicSigningKey.from_str(str(node.get("signing_key", "")), field="node.signing_key")
    if document.payload.issuer != node.get("node_id"):
        raise MalformedError(f"the node {node.get('node_id')!r} sent a report by {document.payload.issuer!r}")
    if not document.verification_result([key], 1).verified:
        raise SignatureError(f"the report is not signed by the node's key {key.keyid[:16]}")
    if args.json:
        _emit(args.out, _pretty(document))
        return 0
    print(summary(document.payload), end="")
    if args.out:
        write_atomic(Path(args.out), _pretty(document))
        print(f"signed report written to {args.out}")
    return 0


# -- watchnet gov report ----------------------------------------------------------------------


def _in_file(error: WatchnetError, path: str) -> WatchnetError:
    """The same typed error, naming the file it came from."""
    try:
        return type(error)(f"{path}: {error}")
    except TypeError:
        return error


def cmd_gov_report(args: argparse.Namespace) -> int:
    from node.reporting.report_html import render_report_html

    period = parse_period(args.period)
    manifest_path = Path(args.manifest)
    try:
        manifest: Manifest = SignedDocument.from_bytes(manifest_path.read_bytes(), Manifest).payload
    except FileNotFoundError as e:
        raise ConfigurationError(f"manifest file {manifest_path} not found (--manifest)") from e
    reports: list[TransparencyReport] = []
    for path in args.inputs:
        try:
            raw = Path(path).read_bytes()
        except FileNotFoundError as e:
            raise ConfigurationError(f"member report {path} not found") from e
        try:
            document = SignedDocument.from_bytes(raw, TransparencyReport)
            reports.append(verify_member_report(document, manifest, period=period.label))
        except WatchnetError as e:
            raise _in_file(e, path) from e
    group = aggregate(reports, manifest_version=manifest.version)
    document = SignedDocument(group)
    if args.key:
        from node.records.keystore import load_signing_key

        key = load_signing_key(Path(args.key))
        if key.keyid not in manifest.keys:
            raise ConfigurationError(
                f"--key {args.key}: key {key.keyid[:16]} is not one of the manifest's keys"
            )
        document.sign(key)
    names = {m.node_id: m.name.get("en") for m in manifest.joint_use.members}
    names[manifest.group_id] = manifest.joint_use.administrator.name.get("en")
    if args.html:
        _emit(args.out, render_report_html(group, names=names, member_reports=reports).encode("utf-8"))
    elif args.json:
        _emit(args.out, _pretty(document))
    else:
        print(summary(group), end="")
        print(f"verified {len(reports)} member report(s) against manifest version {manifest.version}")
        if args.out:
            write_atomic(Path(args.out), _pretty(document))
            print(f"group report written to {args.out}")
    return 0


# -- watchnet pia -----------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _both(text: Any) -> str:
    return f"{text.ja} / {text.en}"


def _deployment(config: NodeConfig, manifest: Manifest) -> str:
    member = manifest.member(config.node_id)
    notice = config.notice
    operator = notice.operator or (member.name if member else None)
    rows: list[tuple[str, str]] = [
        ("node id", config.node_id),
        ("business operator", _both(operator) if operator else "not set ([notice] operator in config.toml)"),
        ("address", _both(notice.address) if notice.address else "not set ([notice] address)"),
        (
            "representative",
            _both(notice.representative) if notice.representative else "not set ([notice] representative)",
        ),
        (
            "contact for requests and complaints",
            _both(notice.contact) if notice.contact else "not set ([notice] contact)",
        ),
        ("public notice", notice.url or "not set ([notice] url)"),
        (
            "membership in the manifest",
            member.status.value if member else "NOT LISTED: the node may not take part",
        ),
        ("node endpoint", member.endpoint if member else "-"),
    ]
    text = _table(["", ""], rows)
    if notice.sites:
        sites = [
            (
                s.site_id,
                _both(s.name),
                ", ".join(s.cameras) or "-",
                f"posted since {s.posted_on.isoformat()}" if s.posted_on else "NOT POSTED YET",
            )
            for s in notice.sites
        ]
        text += "\n\nSites and the 'face-recognition camera in operation' signage (Art. 20-1, 21; R3):\n\n"
        text += _table(["site", "name", "cameras", "signage"], sites)
    else:
        text += "\n\nNo site is recorded in [[notice.sites]]: record each site, its cameras and its signage."
    return text


def _joint_use(config: NodeConfig, manifest: Manifest) -> str:
    joint = manifest.joint_use
    admin = joint.administrator
    members = [
        (
            m.node_id,
            _both(m.name),
            m.status.value,
            m.endpoint,
            "this deployment" if m.node_id == config.node_id else "",
        )
        for m in joint.members
    ]
    items = [(i.code, _both(i.text)) for i in joint.items]
    return "\n".join(
        [
            f"Group `{manifest.group_id}`, manifest version {manifest.version} (expires {format_time(manifest.expires)}), "
            f"signed by {manifest.manifest_role.threshold} of {len(manifest.manifest_role.keyids)} keys of the "
            "certified privacy organisation.",
            "",
            f"1. Fact of joint use: {_both(joint.statement)}",
            "",
            "2. Items used jointly:",
            "",
            _table(["code", "item"], items),
            "",
            f"3. Joint users ({len(joint.members)}):",
            "",
            _table(["node id", "name", "status", "endpoint", ""], members),
            "",
            "4. Purposes: see section 3.",
            "",
            "5. Administrator responsible for the jointly used data:",
            "",
            _table(
                ["", ""],
                [
                    ("name", _both(admin.name)),
                    ("address", _both(admin.address)),
                    ("representative", _both(admin.representative)),
                    ("contact", _both(admin.contact)),
                ],
            ),
        ]
    )


def _purposes(manifest: Manifest) -> str:
    return _table(["code", "purpose"], [(p.code, _both(p.text)) for p in manifest.joint_use.purposes])


def _data_items(manifest: Manifest) -> str:
    shared = manifest.item_codes

    def jointly(code: str) -> str:
        return f"yes (item `{code}`)" if code in shared else "no"

    rows = [
        (
            "camera frames and the faces of passers-by",
            "processed in memory to compute embeddings; never written",
            "not kept",
            "a network query sends only the embeddings, sealed to each active member; a member keeps nothing when nothing matches",
        ),
        (
            "face embedding of a registered person (512 numbers)",
            "database, encrypted (secretbox) under a key of its own, kept outside the database",
            "until deletion or expiry, then its key is destroyed and the row erased",
            jointly("face-embedding"),
        ),
        (
            "face crop of the registration photo (JPEG)",
            "database, encrypted under the entry's own key",
            "erased with the entry",
            "no (to a third party only under a legal basis, if `face-image` is listed)",
        ),
        (
            "incident category",
            "database, in the entry signed by the node",
            "with the entry; kept in its tombstone",
            jointly("incident-category"),
        ),
        (
            "evidence kind and reference (e.g. police report number)",
            "database, in the signed entry",
            "erased with the entry",
            jointly("evidence-kind"),
        ),
        (
            "incident date, registration and expiry dates, site",
            "database, in the signed entry",
            "erased with the entry (dates kept in its tombstone)",
            jointly("registration-period"),
        ),
        (
            "registrar and approving officer (account ids)",
            "database and the signed entry",
            "with the entry",
            "as part of the signed entry",
        ),
        (
            "alerts (which entry matched, score, site, operator)",
            "database",
            "withdrawn (score and entry copy erased) when the entry is deleted",
            "a false-match or confirmed verdict is sent to the entry's owner",
        ),
        (
            "data-subject request: photo taken at the counter and its embedding",
            "database, encrypted",
            "erased when the request closes",
            "searched across the group for that person (purpose data-subject-request)",
        ),
        (
            "data-subject request: kind, identity document kind (never its number), deadline, outcome, entries found",
            "database",
            "kept as the record of the request",
            "a correction, deletion or cease-of-use request is forwarded to the owner of an entry found",
        ),
        (
            "complaints (category, summary, optional contact)",
            "database",
            "kept as the record of the complaint",
            "no",
        ),
        (
            "third-party provisions (legal basis, requester kind, requester, reference, entries)",
            "database; the event log holds a salted commitment only",
            "kept as the record of the provision",
            "no; counted in the transparency report",
        ),
        (
            "signed event log (what happened to which entry, when, why, by whom)",
            "database; nothing biometric",
            "kept (proves that deletions happened)",
            "members follow it to apply corrections and deletions",
        ),
        (
            "audit log (who did what, when, outcome, a hash of the request body)",
            "database, hash-chained",
            "kept",
            "no",
        ),
        (
            "staff accounts (user name, role, password hash, API token hashes)",
            "database",
            "until removed",
            "no",
        ),
    ]
    return _table(["data item", "where and in what form", "retention", "shared with members"], rows)


def _flows(config: NodeConfig, manifest: Manifest) -> str:
    peers = [m for m in manifest.joint_use.members if m.node_id != config.node_id]
    active = [m.node_id for m in peers if m.status is MemberStatus.ACTIVE]
    purposes = ", ".join(sorted(manifest.purpose_codes))
    telemetry = config.telemetry_exporter + (f" to {config.otlp_endpoint}" if config.otlp_endpoint else "")
    rows = [
        (
            "cameras at the sites",
            "this node",
            "frames or photos for local matching (`POST /v1/match`); faces without a match are discarded",
        ),
        (
            "this node",
            f"active members ({', '.join(active) or 'none'})",
            f"queries about the faces in a frame, for a purpose of the group ({purposes}); signed with the node's key and sealed to each member's key",
        ),
        (
            "members",
            "this node",
            f"signed entries matching at or above the group threshold {manifest.policy.match_threshold}",
        ),
        (
            "this node and members",
            "each other",
            "the signed event logs (headers and commitments only), signed receipts for applied deletions and corrections, forwarded data-subject requests, verdicts on alerts",
        ),
        (
            "the organisation",
            "this node",
            f"the signed manifest (from {config.manifest_url or 'a file installed by an admin'}); a new version is verified against {len(config.root_keyids)} pinned root key id(s) before it is trusted",
        ),
        (
            "this node",
            "the organisation",
            "evidence of a member's rewritten log (fork report); the signed transparency report per period",
        ),
        (
            "this node",
            "police and other third parties",
            "only under a legal basis of Art. 27-1, recorded first as a signed event (see section 9)",
        ),
        ("staff", "this node", "the HTTP API with personal API tokens, by role (section 7)"),
        (
            "this node",
            "telemetry",
            f"exporter: {telemetry}; traces and metrics carry route names and counts, never faces, images, tokens or keys",
        ),
    ]
    return _table(["from", "to", "what"], rows)


def _retention(config: NodeConfig, manifest: Manifest, rules: RegistrationRules) -> str:
    recording = config.notice.recording_retention
    rows = [
        (
            "registered entries",
            f"at most {rules.retention_days} days from registration (written rules; the group allows at most {manifest.policy.max_retention_days} days); on expiry deleted here and at every member, which confirm with signed receipts",
        ),
        ("expiry check", f"every {format_duration(config.retention_sweep)}"),
        (
            "faces that match no entry",
            "not stored here; a member answering a query keeps nothing of a face without a match",
        ),
        (
            "camera recordings",
            f"{recording.days} days ([notice] recording_retention)"
            if recording
            else "not stated: set [notice] recording_retention in config.toml",
        ),
        (
            "data-subject request photos",
            f"until the request closes; requests are answered within {DEFAULT_DEADLINE.days} days unless staff set another deadline",
        ),
        (
            "deleted entries",
            "the embedding, face crop, evidence reference and signed entry are erased (SQLite secure_delete and a WAL checkpoint); a tombstone and the signed events remain",
        ),
        ("event log and audit log", "kept for accountability; they hold no biometric data"),
    ]
    return _table(["data", "retention"], rows)


def _safeguards(config: NodeConfig, manifest: Manifest, rules: RegistrationRules) -> str:
    database = config.effective_database_url.split(":", 1)[0].split("+", 1)[0]
    quality = rules.face_quality
    limits = config.limits
    data_key = (
        "WATCHNET_DATA_KEY in the environment"
        if os.environ.get("WATCHNET_DATA_KEY")
        else f"key file {config.data_key_file}"
    )
    rows = [
        (
            "registration rules (社内ルール)",
            f"categories {', '.join(rules.categories)}; objective evidence of kind {', '.join(rules.evidence_kinds)}; special-care data (arrest, prosecution, conviction) has no field and free text is refused",
        ),
        (
            "face quality for registration",
            f"detection score >= {quality.min_detection_score}, face >= {quality.min_face_pixels} px, yaw <= {quality.max_yaw_degrees} degrees, sharpness >= {quality.min_sharpness}",
        ),
        (
            "two-person rule",
            "a registrar proposes; a different account, an officer, approves, corrects or deletes",
        ),
        ("match threshold", f"{manifest.policy.match_threshold} (cosine similarity), set by the group"),
        (
            "encryption at rest",
            f"embeddings, face crops and request photos sealed each under a key of its own, in {config.record_keys_dir}/ sealed with the data key ({data_key}); a deletion destroys the key, so no backup, dead row or WAL copy opens; keys kept outside the database, files mode 0600",
        ),
        (
            "database",
            f"{database} at {'the node directory' if database == 'sqlite' else 'the configured server'}",
        ),
        (
            "peer traffic",
            f"every message signed (Ed25519) and sealed (X25519 box) to the recipient; replay window {format_duration(limits.replay_window)}; {limits.peer_requests_per_minute} peer requests a minute",
        ),
        (
            "staff access",
            f"personal accounts and API tokens; {limits.requests_per_minute} requests a minute per account; request bodies at most {limits.max_body_bytes} bytes",
        ),
        (
            "audit",
            "every request, accepted or refused, in a hash-chained audit log whose head is signed into each tree head; the event log is a Merkle log with signed heads",
        ),
        (
            "membership",
            f"only the members listed in the manifest (version {manifest.version}) are answered, for its purposes only",
        ),
    ]
    roles = [
        (role.value, ", ".join(a.value for a in Action if permitted(role, a) and a not in ORG_ACTIONS))
        for role in NODE_ROLES
    ]
    return "\n".join(
        [
            _table(["safeguard", "as configured"], rows),
            "",
            "Roles and what each may do (least privilege):",
            "",
            _table(["role", "actions"], roles),
        ]
    )


def _model(manifest: Manifest) -> str:
    model = manifest.policy.model
    lines = [
        _table(
            ["", ""],
            [
                ("model", f"`{model.model_id}` ({model.dimension}-dimensional ArcFace embeddings)"),
                (
                    "weights",
                    f"SHA-256 `{model.weights_sha256}`, pinned in the manifest; a node refuses to run another model",
                ),
                ("threshold", f"{manifest.policy.match_threshold}"),
            ],
        ),
        "",
    ]
    if model.model_id.startswith(INSIGHTFACE_PACKS):
        lines.append(
            "Licence: InsightFace's pretrained weights are licensed for non-commercial research only. A "
            "commercial deployment must replace them with a model it is licensed to use (set WATCHNET_MODEL_DIR "
            "and have the organisation pin the new weights in the manifest)."
        )
    else:
        lines.append("> **To complete:** the licence under which this model is used, and who granted it.")
    return "\n".join(lines)


def _rights() -> str:
    kinds = ", ".join(k.value for k in RequestKind)
    grounds = [(g.value, g.text["article"], g.text["en"]) for g in RefusalGround]
    bases = [(code, text["article"], text["en"]) for code, text in LEGAL_BASES.items()]
    return "\n".join(
        [
            f"Requests the node records and tracks to an outcome (Art. 33-35): {kinds}. Identity is checked "
            f"against one of: {', '.join(sorted(IDENTITY_CHECKS))} (the document kind only is stored). A "
            "disclosure request is searched here and across the group; a correction, deletion or cease-of-use "
            "request closes as granted only when every member has confirmed the change with a signed receipt.",
            "",
            "A refusal must name one of these grounds:",
            "",
            _table(["ground", "provision", "meaning"], grounds),
            "",
            "Complaints (Art. 40) are taken from the public without an account and by staff, and tracked to an outcome.",
            "",
            "Data is provided to a third party only on one of these legal bases, recorded with the requester and "
            "the items before anything leaves the node:",
            "",
            _table(["basis", "provision", "meaning"], bases),
        ]
    )


def fill_pia(
    template: str,
    config: NodeConfig,
    manifest: Manifest,
    rules: RegistrationRules,
    *,
    source: str,
    now: datetime,
) -> str:
    """The template with every placeholder replaced; raise if the template asks for one we do not know."""
    member = manifest.member(config.node_id)
    operator = config.notice.operator or (member.name if member else None)
    values = {
        "node_id": config.node_id,
        "operator": operator.en if operator else config.display_name or config.node_id,
        "source": source,
        "generated_at": format_time(now),
        "deployment": _deployment(config, manifest),
        "joint_use": _joint_use(config, manifest),
        "purposes": _purposes(manifest),
        "data_items": _data_items(manifest),
        "flows": _flows(config, manifest),
        "retention": _retention(config, manifest, rules),
        "safeguards": _safeguards(config, manifest, rules),
        "model": _model(manifest),
        "rights": _rights(),
    }
    asked = sorted(set(PLACEHOLDER_RE.findall(template)))
    unknown = [name for name in asked if name not in values]
    if unknown:
        raise ConfigurationError(
            f"the PIA template asks for {unknown}, which watchnet pia does not fill (known: {', '.join(sorted(values))})"
        )
    return PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], template)


def cmd_pia(args: argparse.Namespace) -> int:
    config = NodeConfig.load(Path(args.node))
    manifest_path = config.directory / MANIFEST_FILE
    manifest_bytes = manifest_path.read_bytes() if manifest_path.exists() else b""
    manifest = load_manifest_file(manifest_path).payload
    rules_path = config.directory / RULES_FILE
    try:
        rules = RegistrationRules.from_dict(tomllib.loads(rules_path.read_text(encoding="utf-8")))
    except FileNotFoundError as e:
        raise ConfigurationError(
            f"{rules_path} not found; the PIA states the node's written registration rules"
        ) from e
    except (tomllib.TOMLDecodeError, MalformedError) as e:
        raise ConfigurationError(f"{rules_path}: {e}") from e
    template_path = Path(args.template) if args.template else DEFAULT_TEMPLATE
    try:
        template = template_path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigurationError(
            f"PIA template {template_path} not found; pass --template (the project ships docs/pia-template.md)"
        ) from e
    source = (
        f"{config.directory.name}/config.toml, {MANIFEST_FILE} (version {manifest.version}, SHA-256 "
        f"{sha256_hex(manifest_bytes)[:16]}...), {RULES_FILE}"
    )
    text = fill_pia(
        template, config, manifest, rules, source=source, now=datetime.now(UTC).replace(microsecond=0)
    )
    if args.out:
        write_atomic(Path(args.out), text.encode("utf-8"))
        print(f"wrote {args.out}: complete the sections marked 'To complete' and sign section 12")
    else:
        print(text, end="")
    return 0


# -- registration -----------------------------------------------------------------------------


def _output(p: argparse.ArgumentParser) -> None:
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--json", action="store_true", help="the signed report as JSON")
    kind.add_argument("--html", action="store_true", help="the report as an HTML page with charts")
    p.add_argument("--out", help="write to this file (default: print; for --html, give a file)")


def _gov_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[Any]:
    gov = sub.choices.get("gov")
    if gov is not None:
        for action in gov._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action
    raise RuntimeError(
        "register node.cli.report after node.cli.gov: 'watchnet gov report' extends 'watchnet gov'"
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="this node's transparency report for a period (officer, auditor, admin)",
        description="Ask a running node for its signed transparency report (GET /v1/report).",
    )
    p.set_defaults(handler=cmd_report)
    p.add_argument("--period", required=True, help="2026-Q4, 2026-11 or 2026 (UTC)")
    _output(p)
    p.add_argument(
        "--lang", choices=("ja", "en"), default="en", help="the language of the --html page (default en)"
    )
    p.add_argument(
        "--url",
        type=url_argument,
        default=os.environ.get("WATCHNET_URL") or "http://127.0.0.1:8470",
        help="the node (default $WATCHNET_URL or http://127.0.0.1:8470)",
    )
    p.add_argument("--token", help="API token (default $WATCHNET_TOKEN)")

    text = "verify the members' signed reports against the manifest and add them up into the group report"
    p = _gov_commands(sub).add_parser("report", help=text, description=text)
    p.set_defaults(handler=cmd_gov_report)
    p.add_argument("--period", required=True, help="the period every report must be for, e.g. 2026-Q4")
    p.add_argument(
        "--in",
        dest="inputs",
        nargs="+",
        required=True,
        metavar="REPORT",
        help="members' signed reports (JSON)",
    )
    p.add_argument(
        "--manifest",
        default="manifest.json",
        help="the manifest listing the members' keys (default manifest.json)",
    )
    p.add_argument("--key", help="an organisation key file to sign the group report with")
    _output(p)

    p = sub.add_parser(
        "pia",
        help="fill the PIA record from the node's config, manifest and rules (the operator completes and signs it)",
    )
    p.set_defaults(handler=cmd_pia)
    p.add_argument("--node", required=True, help="the node directory")
    p.add_argument("--out", help="write the Markdown here (default: print)")
    p.add_argument("--template", help=f"the template (default {DEFAULT_TEMPLATE.name} of the project's docs)")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
