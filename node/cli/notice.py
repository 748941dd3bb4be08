"""``watchnet notice show|qr|sign``: the node's public notice, its QR code and the printable sign.

They read the node directory only (``config.toml``, ``manifest.json``, ``rules.toml``), not the
database or keys, so a store manager can print a sign on any machine holding a copy of those
files. The words come from the same notice document the node serves at ``/notice``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from governance.manifest import Manifest
from governance.notice import DEFAULT_LANGUAGE, LANGUAGES, render_text
from governance.rules import RegistrationRules
from node.config import MANIFEST_FILE, RULES_FILE, NodeConfig, load_manifest_file
from node.files import write_atomic
from protocol.errors import ConfigurationError, MalformedError

__all__ = ["register"]

QR_KINDS = {".png": "png", ".svg": "svg"}
SIGN_KINDS = {".pdf": "pdf", ".png": "png"}


def _load(node: str) -> tuple[NodeConfig, Manifest, int | None]:
    """The node's config, trusted manifest, and the retention its written rules set (if readable)."""
    config = NodeConfig.load(Path(node))
    manifest = load_manifest_file(config.directory / MANIFEST_FILE).payload
    rules_path = config.directory / RULES_FILE
    try:
        rules = RegistrationRules.from_dict(tomllib.loads(rules_path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return config, manifest, None
    except (tomllib.TOMLDecodeError, MalformedError) as e:
        raise ConfigurationError(f"{rules_path}: {e}") from e
    return config, manifest, rules.retention_days


def _kind(out: Path, kinds: dict[str, str]) -> str:
    kind = kinds.get(out.suffix.lower())
    if kind is None:
        raise ConfigurationError(f"--out {out}: the file name must end in {' or '.join(kinds)}")
    return kind


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, ensure_ascii=False, sort_keys=True) if args.json else text)


def cmd_show(args: argparse.Namespace) -> int:
    from node.reporting.notice_pages import node_notice, node_notice_html

    config, manifest, retention = _load(args.node)
    if args.json:
        document = node_notice(manifest, config, args.lang, retention)
        print(
            json.dumps({**document.to_dict(), "url": config.notice.url}, ensure_ascii=False, sort_keys=True)
        )
    elif args.html:
        print(node_notice_html(manifest, config, args.lang, retention), end="")
    else:
        print(render_text(node_notice(manifest, config, args.lang, retention)), end="")
    return 0


def cmd_qr(args: argparse.Namespace) -> int:
    from node.reporting.notice_pages import check_notice_url, notice_url, qr_png, qr_svg

    out = Path(args.out)
    kind = _kind(out, QR_KINDS)
    url = check_notice_url(args.url) if args.url else notice_url(NodeConfig.load(Path(args.node)))
    warning = _warn_if_not_public(url)
    write_atomic(out, qr_png(url) if kind == "png" else qr_svg(url))
    _emit(
        args,
        {"out": str(out), "format": kind, "url": url, "warning": warning},
        f"wrote {out}: QR code to {url}",
    )
    return 0


def _warn_if_not_public(url: str) -> str | None:
    from node.reporting.notice_pages import public_url_warning

    warning = public_url_warning(url)
    if warning is not None:
        print(f"watchnet: warning: {warning}", file=sys.stderr)
    return warning


def cmd_sign(args: argparse.Namespace) -> int:
    from node.reporting.notice_pages import notice_url, render_sign

    out = Path(args.out)
    kind = _kind(out, SIGN_KINDS)
    config, manifest, _ = _load(args.node)
    url = notice_url(config, args.url)
    warning = _warn_if_not_public(url)
    data = render_sign(
        manifest, config, url, "pdf" if kind == "pdf" else "png", site_id=args.site, dpi=args.dpi
    )
    write_atomic(out, data)
    _emit(
        args,
        {
            "out": str(out),
            "format": kind,
            "url": url,
            "site": args.site,
            "bytes": len(data),
            "warning": warning,
        },
        f"wrote {out}: A4 'face-recognition camera in operation' sign, QR code to {url}",
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    notice = sub.add_parser(
        "notice",
        help="the public notice (Art. 21, 27-5-3): show it, its QR code, the printable sign",
        description="The node's public notice, generated from its manifest and [notice] settings.",
    )
    commands = notice.add_subparsers(dest="notice_command", metavar="ACTION", required=True)

    def command(name: str, handler: Any, text: str) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=text, description=text)
        p.set_defaults(handler=handler)
        p.add_argument("--node", default=".", help="node directory (default: current directory)")
        p.add_argument("--json", action="store_true", help="print a JSON object for scripts")
        return p

    p = command("show", cmd_show, "print the notice this node serves at /notice (text, --html or --json)")
    p.add_argument("--lang", choices=LANGUAGES, default=DEFAULT_LANGUAGE, help="ja (default) or en")
    p.add_argument("--html", action="store_true", help="print the HTML page instead of text")

    p = command("qr", cmd_qr, "write a QR code to the notice URL (PNG or SVG, by the --out file name)")
    p.add_argument("--out", required=True, help="output file, e.g. notice-qr.png or notice-qr.svg")
    p.add_argument("--url", help="the notice URL (default: [notice] url in config.toml)")

    p = command(
        "sign", cmd_sign, "write a printable A4 'face-recognition camera in operation' sign (PDF or PNG)"
    )
    p.add_argument("--out", required=True, help="output file, e.g. sign.pdf or sign.png")
    p.add_argument("--url", help="the notice URL for the QR code (default: [notice] url in config.toml)")
    p.add_argument("--site", help="a site_id from [[notice.sites]]: print that store's name on the sign")
    p.add_argument("--dpi", type=int, default=200, help="resolution of a PNG sign (default 200)")
