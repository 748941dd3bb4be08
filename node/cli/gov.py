"""``watchnet gov``: the certified privacy organisation's commands for the group manifest.

Each key holder keeps their own key file and signs separately; the manifest is accepted once a
threshold of signatures is collected. Edits of a signed manifest produce the next unsigned
version, because a published version never changes.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from governance.description import add_member, manifest_from_description, renew, set_member_status
from governance.manifest import LocalizedText, Manifest, Member, MemberStatus
from governance.notice import LANGUAGES, render_notice
from governance.roles import ORG_ROLES
from governance.trust import assess
from node.files import write_atomic
from node.records.keystore import load_signing_key, save_key
from protocol.errors import ConfigurationError, MalformedError, PolicyError
from protocol.fields import parse_duration
from protocol.keys import PublicEncryptionKey, PublicSigningKey, SigningKey
from protocol.signed import SignedDocument

__all__ = ["register"]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _pretty(doc: SignedDocument[Manifest]) -> bytes:
    return (json.dumps(doc.to_dict(), indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


def load_manifest(path: Path) -> SignedDocument[Manifest]:
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise ConfigurationError(f"manifest file {path} not found") from e
    return SignedDocument.from_bytes(data, Manifest)


def _save(doc: SignedDocument[Manifest], path: Path) -> None:
    write_atomic(path, _pretty(doc))


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, ensure_ascii=False, sort_keys=True) if args.json else text)


def _read_public_key(value: str) -> PublicSigningKey:
    path = Path(value)
    if path.exists():
        value = path.read_text(encoding="utf-8").strip()
    return PublicSigningKey.from_str(value, field=f"signer {path.name}")


def cmd_keygen(args: argparse.Namespace) -> int:
    key = SigningKey.generate()
    out = Path(args.out)
    save_key(out, key)
    public_path = out.with_suffix(".pub")
    write_atomic(public_path, (key.public.to_str() + "\n").encode())
    _emit(
        args,
        {
            "keyid": key.keyid,
            "public": key.public.to_str(),
            "key_file": str(out),
            "public_file": str(public_path),
        },
        f"wrote {out} (private, mode 600) and {public_path}\nkeyid  {key.keyid}\npublic {key.public.to_str()}",
    )
    return 0


def cmd_keyid(args: argparse.Namespace) -> int:
    key = _read_public_key(args.public)
    _emit(args, {"keyid": key.keyid}, key.keyid)
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    try:
        description = tomllib.loads(Path(args.description).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise MalformedError(f"{args.description}: not valid TOML: {e}") from e
    signers = [_read_public_key(s) for s in args.signer]
    manifest = manifest_from_description(description, signers, args.threshold, _now())
    doc = SignedDocument(manifest)
    _save(doc, Path(args.out))
    _emit(
        args,
        {
            "out": args.out,
            "version": manifest.version,
            "keyids": list(manifest.keys),
            "threshold": args.threshold,
        },
        f"wrote unsigned manifest version {manifest.version} to {args.out}; "
        f"{args.threshold} of {len(signers)} key holders must now run 'watchnet gov sign'",
    )
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    path = Path(args.manifest)
    doc = load_manifest(path)
    key = load_signing_key(Path(args.key))
    if key.keyid not in doc.payload.manifest_role.keyids:
        raise ConfigurationError(
            f"key {key.keyid[:16]}... is not one of the manifest's {len(doc.payload.manifest_role.keyids)} signing keys"
        )
    doc.sign(key)
    _save(doc, path)
    result = doc.verification_result(doc.payload.role_keys(), doc.payload.manifest_role.threshold)
    if args.post:
        answer = _post_signature(args.post, doc, _token(args))
        _emit(
            args,
            {"keyid": key.keyid, "posted": answer},
            f"signed and posted to {args.post}: the draft of version {answer['version']} now holds "
            f"{answer['signed']} of the {answer['threshold']} signatures it needs",
        )
        return 0
    _emit(
        args,
        {"keyid": key.keyid, "signed": len(result.signed), "verified": result.verified},
        f"signed: {result}",
    )
    return 0


class ServerRefused(PolicyError):
    """The organisation's server refused a posted signature; ``code`` is the code it answered."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _token(args: argparse.Namespace) -> str:
    if not args.token_file:
        raise ConfigurationError("--post needs --token-file: a file holding your API token (gov user token)")
    try:
        return Path(args.token_file).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigurationError(f"--token-file {args.token_file}: {e.strerror}") from e


def _post_signature(base: str, doc: SignedDocument[Manifest], token: str) -> dict[str, Any]:
    """POST the signed draft to the organisation's server; its refusal becomes a typed error."""
    import urllib.error
    import urllib.request

    if not base.startswith(("http://", "https://")):
        raise ConfigurationError(f"--post {base[:80]}: not an http(s) address of gov serve")
    url = f"{base.rstrip('/')}/v1/org/drafts/{doc.payload.version}/signatures"
    request = urllib.request.Request(  # noqa: S310 (an http(s) address, checked above)
        url,
        data=doc.to_bytes(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as e:
        try:
            body = json.loads(e.read())
        except ValueError:
            body = {"error": f"http_{e.code}", "message": e.reason}
        raise ServerRefused(
            str(body.get("error", "refused"))[:48],
            f"{url} refused the signature ({e.code}): {body.get('message')}",
        ) from e
    except (urllib.error.URLError, OSError) as e:
        raise ConfigurationError(f"{url}: not reachable ({e})") from e


def cmd_verify(args: argparse.Namespace) -> int:
    doc = load_manifest(Path(args.manifest))
    trusted = load_manifest(Path(args.trusted)).payload if args.trusted else None
    if trusted is None and not args.root_keyid:
        raise ConfigurationError(
            "give the organisation's pinned root key ids (--root-keyid) or --trusted FILE"
        )
    report = assess(doc, now=_now(), pinned_keyids=args.root_keyid, trusted=trusted)
    _emit(
        args,
        {
            "accepted": report.accepted,
            "version": report.version,
            "signatures": str(report.signatures),
            "problems": report.problems,
        },
        str(report),
    )
    return 0 if report.accepted else 1


def _edited(args: argparse.Namespace, manifest: Manifest) -> int:
    doc = SignedDocument(manifest)
    out = Path(args.out or args.manifest)
    _save(doc, out)
    _emit(
        args,
        {"out": str(out), "version": manifest.version},
        f"wrote unsigned draft version {manifest.version} to {out}; it needs "
        f"{manifest.manifest_role.threshold} signatures ('watchnet gov sign')",
    )
    return 0


def cmd_member_add(args: argparse.Namespace) -> int:
    manifest = load_manifest(Path(args.manifest)).payload
    member = Member(
        node_id=args.node_id,
        name=LocalizedText(args.name_ja, args.name_en),
        signing_key=PublicSigningKey.from_str(args.signing_key, field="--signing-key"),
        encryption_key=PublicEncryptionKey.from_str(args.encryption_key, field="--encryption-key"),
        endpoint=args.endpoint,
    )
    Member.from_dict(member.to_dict())
    return _edited(args, add_member(manifest, member))


def cmd_member_status(args: argparse.Namespace) -> int:
    manifest = load_manifest(Path(args.manifest)).payload
    return _edited(args, set_member_status(manifest, args.node_id, MemberStatus(args.status)))


def cmd_bump(args: argparse.Namespace) -> int:
    manifest = load_manifest(Path(args.manifest)).payload
    return _edited(args, renew(manifest, _now(), parse_duration(args.expires_in, field="--expires-in")))


def cmd_notice(args: argparse.Namespace) -> int:
    manifest = load_manifest(Path(args.manifest)).payload
    print(render_notice(manifest, args.lang), end="")
    return 0


def _org_database(args: argparse.Namespace) -> str:
    from node.org.staff import database_url

    return args.database or database_url(Path(args.manifest).parent)


def cmd_user(args: argparse.Namespace) -> int:
    """``gov user add | list``: the organisation's staff accounts (the first admin is made here)."""
    from governance.roles import Role
    from node.cli.node import _cli_actor, _password
    from node.org.staff import OrgStaff

    staff = OrgStaff.open(_org_database(args))
    try:
        if args.user_command == "token":
            token = staff.accounts.issue_token(
                args.username,
                _now(),
                timedelta(days=args.days),
                actor=_cli_actor(),
                write_lock=staff.write_lock,
            )
            _emit(
                args,
                {"username": args.username, "token": token, "days": args.days},
                f"{token}\n(shown once; a key holder posts signatures with "
                "'watchnet gov sign DRAFT --key KEY --post URL --token-file FILE')",
            )
            return 0
        if args.user_command == "add":
            member = staff.accounts.add(
                args.username,
                Role(args.role),
                _password(args),
                _now(),
                actor=_cli_actor(),
                write_lock=staff.write_lock,
            )
            _emit(
                args,
                {"id": member.id, "username": member.username, "role": member.role.value},
                f"added {member.username} ({member.role.value}) as {member.id}; sign in at /console of gov serve",
            )
            return 0
        rows = [
            {"id": m.id, "username": m.username, "role": m.role.value, "disabled": disabled}
            for m, disabled in staff.accounts.list()
        ]
        if args.json:
            print(json.dumps(rows, ensure_ascii=False, sort_keys=True))
        else:
            for row in rows:
                print(
                    f"{row['username']:<24} {row['role']:<12} {'disabled' if row['disabled'] else 'enabled'}"
                )
        return 0
    finally:
        staff.close()


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from aiohttp import web

    from node.jsonlog import json_handler
    from node.org.server import build_gov_app
    from node.org.staff import OrgStaff

    # One JSON object per line on stderr, for our records and aiohttp's alike (root at WARNING):
    # a reporter's or a complainant's text can never start a line of its own.
    logging.getLogger().addHandler(json_handler())
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("watchnet").setLevel(logging.INFO)
    path = Path(args.manifest)
    reports = Path(args.reports) if args.reports else path.parent / "reports"
    witness = None
    if args.witness_key:
        from node.org.server import ManifestPublisher
        from node.org.witness import OrganisationWitness
        from node.records.keystore import load_signing_key

        state = Path(args.witness_state) if args.witness_state else path.parent / "witness"
        witness = OrganisationWitness(state, load_signing_key(Path(args.witness_key)))
        witness.check_key(ManifestPublisher(path).current().payload)
    staff = None if args.no_console else OrgStaff.open(_org_database(args))
    app = build_gov_app(
        path,
        reports,
        witness=witness,
        staff=staff,
        member_poll=parse_duration(args.member_poll, field="--member-poll").total_seconds(),
        referral_retry=parse_duration(args.referral_retry, field="--referral-retry").total_seconds(),
    )
    logging.getLogger("watchnet.gov").info(
        "publishing %s on http://%s:%s/v1/manifest (reports to %s)",
        path,
        args.host,
        args.port,
        reports,
        extra={"manifest": str(path), "reports": str(reports), "port": args.port},
    )
    web.run_app(app, host=args.host, port=args.port, print=None, handle_signals=True)
    return 0


def _reports_dir(args: argparse.Namespace) -> Path:
    return Path(args.reports) if args.reports else Path(args.manifest).parent / "reports"


def _pretty_clearance(doc: SignedDocument[Any]) -> bytes:
    return (json.dumps(doc.to_dict(), indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


def cmd_fork_clear(args: argparse.Namespace) -> int:
    """``gov fork-clear draft | sign | publish``: every step is a record of the decision log."""
    from node.org.clearances import (
        draft_clearance,
        gather_evidence,
        load_clearance,
        publish_clearance,
        record_decision,
        refusal_text,
    )
    from protocol.errors import WatchnetError

    manifest = load_manifest(Path(args.manifest)).payload
    reports = _reports_dir(args)
    now = _now()

    def decide(member: str, outcome: str, detail: str, clearance: Any = None) -> None:
        """One record of the organisation's decision log (``decisions.jsonl`` beside the reports)."""
        record_decision(
            reports,
            action=f"fork-clear.{args.clear_command}",
            member=member,
            outcome=outcome,
            now=now,
            clearance=clearance,
            detail=detail,
            actor=args.by,
        )

    if args.clear_command == "draft":
        member = manifest.member(args.member)
        if member is None:
            raise ConfigurationError(f"{args.member} is not a member of manifest version {manifest.version}")
        token = args.token
        if args.token_file:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        try:
            evidence = gather_evidence(
                reports,
                args.member,
                endpoint=args.endpoint or member.endpoint,
                token=token,
                wanted=args.report or None,
            )
            doc = draft_clearance(
                manifest,
                args.member,
                evidence,
                now=now,
                valid_for=parse_duration(args.expires_in, field="--expires-in"),
            )
        except WatchnetError as e:
            decide(args.member, f"refused:{e.code}", refusal_text(e))
            raise
        out = Path(args.out)
        write_atomic(out, _pretty_clearance(doc))
        decide(
            args.member,
            "drafted",
            f"{len(evidence.reports)} report(s); head of size {doc.payload.tree_size} extends each",
            doc.payload,
        )
        _emit(
            args,
            {
                "out": str(out),
                "member": args.member,
                "tree_size": doc.payload.tree_size,
                "reports": list(doc.payload.reports),
            },
            f"the evidence holds: {args.member}'s head of size {doc.payload.tree_size} extends the heads "
            f"of {len(evidence.reports)} fork report(s); wrote unsigned {out}; "
            f"{manifest.manifest_role.threshold} key holders must now run 'watchnet gov fork-clear sign'",
        )
        return 0
    path = Path(args.clearance)
    doc = load_clearance(path)
    if args.clear_command == "sign":
        key = load_signing_key(Path(args.key))
        if key.keyid not in manifest.manifest_role.keyids:
            raise ConfigurationError(
                f"key {key.keyid[:16]}... is not one of the manifest's "
                f"{len(manifest.manifest_role.keyids)} signing keys"
            )
        doc.sign(key)
        write_atomic(path, _pretty_clearance(doc))
        result = doc.verification_result(manifest.role_keys(), manifest.manifest_role.threshold)
        decide(doc.payload.member, "signed", f"key {key.keyid[:16]}; {result}", doc.payload)
        _emit(
            args,
            {"keyid": key.keyid, "signed": len(result.signed), "verified": result.verified},
            f"signed: {result}",
        )
        return 0
    try:
        published = publish_clearance(reports, doc, manifest, now=now)
    except WatchnetError as e:
        decide(doc.payload.member, f"refused:{e.code}", refusal_text(e), doc.payload)
        raise
    decide(doc.payload.member, "published", str(published), doc.payload)
    _emit(
        args,
        {"published": str(published), "member": doc.payload.member},
        f"published {published}: gov serve answers it at /v1/fork-clearances/{doc.payload.member}; "
        "followers resume at their next manifest poll",
    )
    return 0


def cmd_complaints(args: argparse.Namespace) -> int:
    from node.org.complaints import close_complaint, file_complaint, list_complaints

    directory = Path(args.dir)
    now = datetime.now(UTC).replace(microsecond=0)
    if args.complaints_command == "add":
        result: Any = file_complaint(
            directory,
            channel=args.channel,
            category=args.category,
            summary=args.summary,
            contact=args.contact,
            member=args.member,
            now=now,
        )
    elif args.complaints_command == "close":
        result = close_complaint(directory, args.complaint_id, outcome=args.outcome, note=args.note, now=now)
    else:
        result = list_complaints(directory, args.status) if directory.exists() else []
    if args.json:
        print(json.dumps(result, ensure_ascii=False, sort_keys=True))
    else:
        for c in result if isinstance(result, list) else [result]:
            referral = c.get("referral") or {}
            referred = (
                ""
                if not referral
                else "answered"
                if c.get("answer")
                else "delivered"
                if referral.get("delivered_at")
                else "undelivered"
            )
            print(
                f"{c['id']}  {c['received_at']}  {c['status']:<6} {c['category']:<18} {c['outcome'] or '':<8} "
                f"{referred:<11} {c['summary'][:60]}"
            )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gov = sub.add_parser("gov", help="the certified privacy organisation's manifest commands")
    commands = gov.add_subparsers(dest="gov_command", metavar="COMMAND", required=True)

    def command(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="print a JSON object for scripts")
        p.set_defaults(handler=handler)
        return p

    p = command(
        "keygen", cmd_keygen, "create one key holder's Ed25519 signing key (file mode 600) and its .pub"
    )
    p.add_argument("--out", required=True, help="private key file to create, e.g. org-key-1.key")

    p = command("keyid", cmd_keyid, "print the key id (hex SHA-256) of a .pub file or public key")
    p.add_argument("public", help="a .pub file written by keygen, or a base64url public key")

    p = command("create", cmd_create, "create version 1 of a manifest from a TOML description")
    p.add_argument(
        "--description", required=True, help="group description TOML (see docs/examples/group.toml)"
    )
    p.add_argument("--signer", action="append", required=True, help="a key holder's .pub file or public key")
    p.add_argument("--threshold", type=int, required=True, help="signatures needed to accept a version")
    p.add_argument("--out", required=True, help="manifest file to write")

    p = command("sign", cmd_sign, "add one key holder's signature to a manifest (in place)")
    p.add_argument("manifest")
    p.add_argument("--key", required=True, help="this key holder's private key file")
    p.add_argument(
        "--post",
        help="then send the signed draft to the organisation's console, e.g. https://org.example "
        "(instead of uploading the file on the draft's page)",
    )
    p.add_argument("--token-file", help="with --post: a file holding your API token (gov user token)")

    p = command("verify", cmd_verify, "check signatures, threshold, expiry and version; exit 1 if refused")
    p.add_argument("manifest")
    p.add_argument("--root-keyid", action="append", default=[], help="a pinned root key id (repeat)")
    p.add_argument("--trusted", help="the currently trusted manifest: the new one must be a valid successor")

    member = commands.add_parser("member", help="add, suspend, remove or reinstate a member")
    member_commands = member.add_subparsers(dest="member_command", metavar="ACTION", required=True)
    p = member_commands.add_parser("add", help="add a member (writes the next unsigned version)")
    p.set_defaults(handler=cmd_member_add)
    p.add_argument("manifest")
    p.add_argument("--node-id", required=True)
    p.add_argument("--name-ja", required=True)
    p.add_argument("--name-en", required=True)
    p.add_argument("--signing-key", required=True, help="the node's Ed25519 public key (base64url)")
    p.add_argument("--encryption-key", required=True, help="the node's X25519 public key (base64url)")
    p.add_argument("--endpoint", required=True, help="the node's URL, e.g. https://node.chain-c.example")
    p.add_argument("--out", help="write here instead of over MANIFEST")
    p.add_argument("--json", action="store_true", help="print a JSON object for scripts")
    for action, status in (("suspend", "suspended"), ("remove", "removed"), ("reinstate", "active")):
        p = member_commands.add_parser(
            action, help=f"mark a member {status} (writes the next unsigned version)"
        )
        p.set_defaults(handler=cmd_member_status, status=status)
        p.add_argument("manifest")
        p.add_argument("node_id")
        p.add_argument("--out", help="write here instead of over MANIFEST")
        p.add_argument("--json", action="store_true", help="print a JSON object for scripts")

    p = command("bump", cmd_bump, "renew: write the next unsigned version with a new expiry")
    p.add_argument("manifest")
    p.add_argument("--expires-in", default="180d", help="validity from now, e.g. 180d (default)")
    p.add_argument("--out", help="write here instead of over MANIFEST")

    p = command(
        "serve",
        cmd_serve,
        "publish the newest fully signed manifest and its notice over HTTP; take fork reports",
    )
    p.add_argument("--manifest", required=True, help="the manifest file the key holders sign")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8460)
    p.add_argument("--reports", help="directory for fork reports (default: reports/ beside the manifest)")
    p.add_argument(
        "--witness-key",
        help="the organisation's online witness key (policy.witness.organisation names its public half): "
        "witness every member's log at /v1/witness (never a key that signs the manifest)",
    )
    p.add_argument(
        "--witness-state",
        help="where the witness keeps each log's latest checkpoint (default: witness/ beside the manifest)",
    )
    p.add_argument(
        "--database",
        help="the organisation's accounts and audit log (default: sqlite org.db beside the manifest)",
    )
    p.add_argument("--no-console", action="store_true", help="serve no staff console at /console")
    p.add_argument(
        "--member-poll",
        default="300s",
        help="how often to ask each member which manifest it runs (default 300s)",
    )
    p.add_argument(
        "--referral-retry",
        default="30s",
        help="first wait before delivering a complaint referral to its member again (doubling, at most 1h; default 30s)",
    )

    user = commands.add_parser("user", help="the organisation's staff accounts (console sign-in)")
    user_commands = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    p = user_commands.add_parser("add", help="add an account: secretariat, key-holder, auditor or admin")
    p.add_argument("username")
    p.add_argument("--role", required=True, choices=[r.value for r in ORG_ROLES])
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    user_commands.add_parser("list", help="list the accounts")
    p = user_commands.add_parser("token", help="issue an API token (shown once), for 'gov sign --post'")
    p.add_argument("username")
    p.add_argument("--days", type=int, default=30, help="validity in days (default 30, at most 365)")
    for p in user_commands.choices.values():
        p.set_defaults(handler=cmd_user)
        p.add_argument("--manifest", required=True, help="the manifest file gov serve publishes")
        p.add_argument("--database", help="default: sqlite org.db beside the manifest")
        p.add_argument("--json", action="store_true", help="print JSON for scripts")

    clear = commands.add_parser(
        "fork-clear",
        help="clear a member's fork flag once it proves it restored honestly (draft, sign, publish)",
    )
    clear_commands = clear.add_subparsers(dest="clear_command", metavar="ACTION", required=True)
    p = clear_commands.add_parser(
        "draft",
        help="check the member's head extends every reported verified head, then write an unsigned clearance",
    )
    p.add_argument("--member", required=True, help="the flagged member's node id")
    p.add_argument("--out", required=True, help="the unsigned clearance file to write")
    p.add_argument("--report", action="append", default=[], help="a fork report id to clear (default: all)")
    p.add_argument("--endpoint", help="the member's URL (default: its endpoint in the manifest)")
    p.add_argument("--token", help="an auditor token of the member's node, for its consistency proofs")
    p.add_argument("--token-file", help="a file holding that token")
    p.add_argument("--expires-in", default="30d", help="how long followers accept it, e.g. 30d (default)")
    p = clear_commands.add_parser("sign", help="add one key holder's signature to a clearance (in place)")
    p.add_argument("clearance")
    p.add_argument("--key", required=True, help="this key holder's private key file")
    p = clear_commands.add_parser("publish", help="check the threshold and expiry and publish for gov serve")
    p.add_argument("clearance")
    for p in clear_commands.choices.values():
        p.set_defaults(handler=cmd_fork_clear)
        p.add_argument("--manifest", required=True, help="the manifest file the key holders sign")
        p.add_argument("--reports", help="the fork report directory (default: reports/ beside the manifest)")
        p.add_argument("--by", default="", help="who takes this step, for the decision record")
        p.add_argument("--json", action="store_true", help="print a JSON object for scripts")

    complaints = commands.add_parser("complaints", help="the organisation's complaint register (Art. 40)")
    complaint_commands = complaints.add_subparsers(dest="complaints_command", metavar="ACTION", required=True)
    p = complaint_commands.add_parser("list", help="complaints, oldest first")
    p.add_argument("--status", choices=["open", "closed"])
    p = complaint_commands.add_parser("add", help="record a complaint taken by phone, mail or in person")
    p.add_argument("--channel", default="phone", choices=["phone", "mail", "counter", "organisation"])
    p.add_argument(
        "--category", required=True, help="misidentification, registration, data-handling, notice, ..."
    )
    p.add_argument("--summary", required=True)
    p.add_argument("--contact")
    p.add_argument("--member", help="the member the complaint is about, if any")
    p = complaint_commands.add_parser("close", help="close with an outcome and a note")
    p.add_argument("complaint_id")
    p.add_argument("--outcome", required=True, choices=["resolved", "rejected", "referred"])
    p.add_argument("--note", required=True)
    for p in complaint_commands.choices.values():
        p.set_defaults(handler=cmd_complaints)
        p.add_argument(
            "--dir",
            default="complaints",
            help="the register (gov serve writes to complaints/ beside the manifest)",
        )
        p.add_argument("--json", action="store_true", help="print JSON for scripts")

    p = command("notice", cmd_notice, "print the joint-use notice (Art. 27-5-3) from a manifest")
    p.add_argument("manifest")
    p.add_argument("--lang", choices=LANGUAGES, default="ja")
