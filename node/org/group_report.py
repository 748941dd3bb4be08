"""The group's transparency report: members' signed reports kept per period, aggregated, published.

Each member signs its own transparency report (``watchnet report --sign``). The organisation keeps
the ones it receives in ``member-reports/<period>/<member>.json`` beside the manifest, each
checked when it arrives and again whenever it is read (``governance.report.verify_member_report``:
a node report of this group and period, signed by that member's key in the manifest in force).
The group report is their sum (``governance.report.aggregate``), computed from the verified files
every time it is shown, so it can never disagree with them; members that sent nothing for the
period are listed as missing. Publishing a period (a marker file) makes its page public at
``/report/<period>``, in Japanese and English, with the members' charts
(``node.reporting.report_html``).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from governance.manifest import Manifest, MemberStatus
from governance.report import TransparencyReport, aggregate, parse_period, verify_member_report
from node.files import write_atomic
from node.reporting.report_html import PRINT_STYLE, STYLE, report_body_html
from protocol.errors import MalformedError, WatchnetError
from protocol.fields import format_time
from protocol.signed import SignedDocument

__all__ = ["MAX_REPORT_FILE", "PeriodReports", "ReportStore", "group_report_html"]

MAX_REPORT_FILE = 256 << 10
PUBLISHED = "published.json"


@dataclass(frozen=True)
class PeriodReports:
    """What the organisation holds for one period, checked now against the version in force."""

    period: str
    verified: tuple[TransparencyReport, ...]
    refused: tuple[tuple[str, str], ...]
    """(file name, error code) of files that no longer verify."""
    missing: tuple[str, ...]
    """Active members with no verified report for the period."""
    published: dict[str, str] | None

    @property
    def group(self) -> TransparencyReport | None:
        if not self.verified:
            return None
        return aggregate(list(self.verified), manifest_version=max(r.manifest_version for r in self.verified))


class ReportStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _period_dir(self, period: str) -> Path:
        return self.directory / parse_period(period).label

    def add(self, data: bytes, manifest: Manifest) -> TransparencyReport:
        """Keep a member's signed report (replacing its earlier one for the same period)."""
        if len(data) > MAX_REPORT_FILE:
            raise MalformedError(f"report file of {len(data)} bytes, limit {MAX_REPORT_FILE}")
        document = SignedDocument.from_bytes(data, TransparencyReport)
        report = verify_member_report(document, manifest)
        folder = self._period_dir(report.period.label)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / f"{report.issuer}.json", document.to_bytes())
        return report

    def read(self, period: str, manifest: Manifest) -> PeriodReports:
        folder = self._period_dir(period)
        verified: list[TransparencyReport] = []
        refused: list[tuple[str, str]] = []
        paths = sorted(p for p in folder.glob("*.json") if p.name != PUBLISHED) if folder.exists() else []
        for path in paths:
            try:
                document = SignedDocument.from_bytes(path.read_bytes(), TransparencyReport)
                verified.append(verify_member_report(document, manifest, period=folder.name))
            except WatchnetError as e:
                refused.append((path.name, e.code))
        reported = {r.issuer for r in verified}
        missing = tuple(
            m.node_id
            for m in manifest.joint_use.members
            if m.status is MemberStatus.ACTIVE and m.node_id not in reported
        )
        marker = folder / PUBLISHED
        published = json.loads(marker.read_text(encoding="utf-8")) if marker.exists() else None
        return PeriodReports(folder.name, tuple(verified), tuple(refused), missing, published)

    def latest(self, manifest: Manifest) -> dict[str, TransparencyReport]:
        """Each member's most recently generated report that still verifies, over every period."""
        newest: dict[str, TransparencyReport] = {}
        if not self.directory.exists():
            return newest
        for folder in sorted(p for p in self.directory.iterdir() if p.is_dir()):
            for path in sorted(folder.glob("*.json")):
                if path.name == PUBLISHED:
                    continue
                try:
                    document = SignedDocument.from_bytes(path.read_bytes(), TransparencyReport)
                    report = verify_member_report(document, manifest, period=folder.name)
                except (WatchnetError, OSError):
                    continue  # the period's page names it as refused
                held = newest.get(report.issuer)
                if held is None or report.generated_at > held.generated_at:
                    newest[report.issuer] = report
        return newest

    def publish(self, period: str, *, by: str, now: datetime) -> None:
        folder = self._period_dir(period)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / PUBLISHED, json.dumps({"by": by, "at": format_time(now)}).encode())


_MISSING = {
    "ja": ("報告のない参加事業者", "この期間の報告を受け取っていない参加事業者はありません。"),
    "en": ("Members whose report is missing", "Every member has reported for this period."),
}


def group_report_html(reports: PeriodReports, manifest: Manifest, lang: str) -> str:
    """The public page of a period's group report, with the members that did not report."""
    group = reports.group
    names = {m.node_id: m.name.get(lang) for m in manifest.joint_use.members}
    names[manifest.group_id] = manifest.joint_use.administrator.name.get(lang)
    heading, none_missing = _MISSING[lang]
    missing = "".join(
        f'<li data-member="{html.escape(m)}">{html.escape(names.get(m, m))} ({html.escape(m)})</li>'
        for m in reports.missing
    )
    missing_html = (
        f'<section id="missing"><h2>{heading}</h2>'
        + (f"<ul>{missing}</ul>" if missing else f"<p>{none_missing}</p>")
        + "</section>"
    )
    body = (
        ""
        if group is None
        else report_body_html(group, names=names, member_reports=reports.verified, lang=lang)
    )
    title = f"{manifest.joint_use.administrator.name.get(lang)} {reports.period}"
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}{PRINT_STYLE}</style>\n</head>\n<body>\n"
        f"{body}\n{missing_html}\n</body>\n</html>\n"
    )
