"""The transparency report as one self-contained HTML page, with charts a reader takes in at a glance.

The page is for the public and the organisation: key figures first, then a bar chart and the
exact numbers for each part of the report, then what counts in a period. Charts are matplotlib
SVG drawn with the Agg backend and written into the page itself; there is no script, no font,
style sheet or image fetched from anywhere, and every text taken from the report is escaped.
Each chart's element ids are prefixed so several charts can share one page.
"""

from __future__ import annotations

import html
import io
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from governance.report import Tally, TransparencyReport, totals
from protocol.fields import format_time

__all__ = ["STYLE", "key_figures", "render_report_html", "report_body_html"]

NAVY, AMBER, TEAL, GREY, RED = "#1f3a5f", "#f5b700", "#2a9d8f", "#8d99ae", "#c44536"
PALETTE = (NAVY, AMBER, TEAL, RED, GREY, "#6d597a", "#e76f51", "#264653")
_ID_RE = re.compile(r'\bid="([^"]+)"')
_RC_LOCK = threading.Lock()
"""matplotlib's rc settings are process-wide: one chart is written at a time."""

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", "Hiragino Sans", "Noto Sans JP", sans-serif;
       margin: 0 auto; max-width: 60rem; padding: 1.5rem; color: #1d2433; line-height: 1.5; }
h1 { color: #1f3a5f; margin-bottom: 0.2rem; }
h2 { color: #1f3a5f; border-bottom: 2px solid #f5b700; padding-bottom: 0.2rem; margin-top: 2.2rem; }
.meta { color: #555; margin-top: 0; }
.partial { background: #fff4d6; border-left: 4px solid #f5b700; padding: 0.5rem 0.8rem; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(10.5rem, 1fr)); gap: 0.7rem; padding: 0; }
.figures li { list-style: none; background: #f3f5f8; border-radius: 6px; padding: 0.6rem 0.8rem; }
.figures .n { display: block; font-size: 1.9rem; font-weight: 700; color: #1f3a5f; }
.figures .l { font-size: 0.85rem; color: #444; }
figure { margin: 1rem 0; }
figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 0.9rem; color: #444; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.92rem; }
th, td { border-bottom: 1px solid #dde2ea; padding: 0.25rem 0.8rem 0.25rem 0; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.empty { color: #666; font-style: italic; }
dl.defs dt { font-weight: 600; margin-top: 0.5rem; }
dl.defs dd { margin-left: 1rem; color: #333; }
"""

DEFINITIONS = (
    (
        "Period",
        "Every count belongs to the period [start, end) in UTC that contains the moment the event happened.",
    ),
    (
        "Entries",
        "Proposals by date proposed; approvals, corrections, deletions and expiries by the time signed into "
        "the node's event log; rejections by the date of the officer's decision.",
    ),
    (
        "Queries",
        "Sent: queries to the other members with at least one face (network queries and searches for a "
        "data-subject request). Answered or refused: members' queries received, as recorded in the audit log.",
    ),
    (
        "Matches",
        "Hits at or above the group's threshold: returned by members to this node, returned by this node "
        "to members, and found locally. False-match reports are the verdicts of staff on alerts.",
    ),
    (
        "Refusals",
        "Every refused request to the node (staff, public or a member's sealed message) and every piece of "
        "a member's or the organisation's data the node refused, by error code, each counted once.",
    ),
    (
        "Third-party provisions",
        "Requests from the police and other third parties (APPI Art. 27-1) by date received; provided "
        "only under a legal basis, and then logged as a signed event first.",
    ),
    (
        "Data-subject requests and complaints",
        "By date received and date closed; requests forwarded by another member are counted apart, so a "
        "group sum counts each person's request once.",
    ),
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


# -- charts -----------------------------------------------------------------------------------


def _svg(figure: Any, prefix: str, label: str) -> str:
    """The figure as inline SVG: no XML prolog or DTD, ids prefixed, labelled for screen readers."""
    import matplotlib

    out = io.StringIO()
    with _RC_LOCK, matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": prefix}):
        figure.savefig(
            out, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None}
        )
    text = out.getvalue()
    text = text[text.index("<svg") :]
    ids = set(_ID_RE.findall(text))
    text = _ID_RE.sub(lambda m: f'id="{prefix}-{m.group(1)}"', text)
    for old in sorted(ids, key=len, reverse=True):
        text = text.replace(f"url(#{old})", f"url(#{prefix}-{old})").replace(
            f'href="#{old}"', f'href="#{prefix}-{old}"'
        )
    return text.replace("<svg ", f'<svg role="img" aria-label="{_e(label)}" ', 1)


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    *,
    prefix: str,
    stacked: bool = False,
) -> str:
    """Horizontal bars, one row per category, grouped (or stacked) by series; counts written on the bars."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows = len(categories)
    groups = 1 if stacked else len(series)
    figure = Figure(figsize=(7.2, 0.8 + rows * (0.28 + 0.16 * groups)), layout="constrained")
    FigureCanvasSVG(figure)
    ax = figure.add_subplot()
    height = 0.8 / groups
    left = [0] * rows
    bars = None
    for i, (name, values) in enumerate(series):
        offsets = [r - 0.4 + height * (0.5 + (0 if stacked else i)) for r in range(rows)]
        bars = ax.barh(
            offsets,
            values,
            height=height,
            left=left if stacked else None,
            color=PALETTE[i % len(PALETTE)],
            label=name,
        )
        if stacked:
            left = [a + b for a, b in zip(left, values, strict=True)]
        else:
            ax.bar_label(bars, labels=[str(v) if v else "" for v in values], padding=3, fontsize=8)
    if stacked and bars is not None:
        ax.bar_label(bars, labels=[str(v) if v else "" for v in left], padding=3, fontsize=8)
    ax.set_yticks(range(rows), labels=list(categories))
    for tick in ax.get_yticklabels():
        tick.set_parse_math(False)
    ax.invert_yaxis()
    ax.set_title(title, loc="left", fontsize=11, color=NAVY, parse_math=False)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.spines[["top", "right"]].set_visible(False)
    ax.margins(x=0.12)
    if len(series) > 1:
        figure.legend(fontsize=8, frameon=False, loc="outside lower center", ncols=min(len(series), 4))
    return _svg(figure, prefix, title)


# -- page parts -------------------------------------------------------------------------------


class _Page:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.charts = 0

    def add(self, text: str) -> None:
        self.parts.append(text)

    def figure(
        self,
        title: str,
        categories: Sequence[str],
        series: Sequence[tuple[str, Sequence[int]]],
        *,
        stacked: bool = False,
    ) -> None:
        if not categories or not any(any(values) for _, values in series):
            self.add(f'<p class="empty">{_e(title)}: none in this period.</p>')
            return
        if stacked:
            series = [s for s in series if any(s[1])]
        self.charts += 1
        svg = bar_chart(title, categories, series, prefix=f"c{self.charts}", stacked=stacked)
        self.add(f"<figure>{svg}</figure>")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        if not rows:
            return
        head = "".join(f"<th>{_e(h)}</th>" for h in headers)
        body = "".join(
            "<tr>"
            + "".join(
                f'<td class="n">{_e(c)}</td>' if isinstance(c, int) else f"<td>{_e(c)}</td>" for c in row
            )
            + "</tr>"
            for row in rows
        )
        self.add(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def tally_table(self, label: str, tally: Tally) -> None:
        self.table([label, "count"], [*sorted(tally.items()), ("total", totals(tally))])


def key_figures(report: TransparencyReport) -> list[tuple[str, int]]:
    """The handful of numbers shown first (and printed by ``watchnet report``)."""
    entries, queries, matches = report.entries, report.queries, report.matches
    requests = report.subject_requests
    return [
        ("entries registered", entries.approved),
        ("proposals rejected", totals(entries.rejected)),
        ("entries corrected", totals(entries.corrected)),
        ("entries deleted (incl. expiry)", totals(entries.deleted)),
        ("entries active at the end", entries.active_at_end),
        ("queries sent to members", totals(queries.sent)),
        ("members' queries answered", totals(queries.answered)),
        ("matches", matches.local_hits + matches.network_hits),
        ("false-match reports by staff", matches.reviews.get("false-match", 0)),
        ("refusals", totals(report.refusals.requests) + totals(report.refusals.peer_data)),
        ("law-enforcement and other third-party requests", totals(report.provisions.received)),
        ("data-subject requests", totals(requests.received)),
        ("complaints", totals(report.complaints.received)),
    ]


def _forwards(extra: Mapping[str, Any]) -> Tally:
    """``subject_requests.forwards`` (not yet a declared field, so taken only if it is a tally)."""
    value = extra.get("forwards")
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(n, int) and not isinstance(n, bool) and n >= 0
        for k, n in value.items()
    ):
        return {}
    return dict(value)


def _merged(*tallies: Tally) -> list[str]:
    return sorted(set().union(*tallies))


def render_report_html(
    report: TransparencyReport,
    *,
    names: Mapping[str, str] | None = None,
    member_reports: Sequence[TransparencyReport] = (),
) -> str:
    """The page for ``report``; ``names`` gives display names for node ids, ``member_reports`` a group's parts."""
    who = (names or {}).get(report.issuer, report.issuer)
    title = f"Transparency report {report.period.label}: {who}"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + report_body_html(report, names=names, member_reports=member_reports)
        + "\n</body>\n</html>\n"
    )


def report_body_html(
    report: TransparencyReport,
    *,
    names: Mapping[str, str] | None = None,
    member_reports: Sequence[TransparencyReport] = (),
) -> str:
    """The report's headings, figures, charts and tables without the page around them (``STYLE`` styles
    them), for a page that has its own frame, such as the staff console's."""
    names = names or {}
    who = names.get(report.issuer, report.issuer)
    period = report.period
    page = _Page()
    scope = "group report" if report.scope.value == "group" else "node report"
    page.add(f"<h1>Transparency report: {_e(who)}</h1>")
    page.add(
        f'<p class="meta">{_e(scope)} for {_e(period.label)} ({_e(format_time(period.start))} to '
        f"{_e(format_time(period.end))}, end excluded) &middot; group {_e(report.group_id)} &middot; manifest "
        f"version {report.manifest_version} &middot; counted at {_e(format_time(report.generated_at))}</p>"
    )
    if not report.complete:
        page.add('<p class="partial">The period has not ended yet: these are the counts so far.</p>')
    if report.scope.value == "group":
        members = ", ".join(f"{names.get(m, m)} ({m})" for m in report.members)
        page.add(f"<p>Members counted ({len(report.members)}): {_e(members)}</p>")

    page.add("<h2>At a glance</h2>")
    figures = "".join(
        f'<li><span class="n">{n}</span><span class="l">{_e(label)}</span></li>'
        for label, n in key_figures(report)
    )
    page.add(f'<ul class="figures">{figures}</ul>')

    if member_reports:
        page.add("<h2>By member</h2>")
        ordered = sorted(member_reports, key=lambda r: r.issuer)
        labels = [r.issuer for r in ordered]
        page.figure(
            "Registrations, deletions and queries by member",
            labels,
            [
                ("registered", [r.entries.approved for r in ordered]),
                ("deleted", [totals(r.entries.deleted) for r in ordered]),
                ("queries sent", [totals(r.queries.sent) for r in ordered]),
                ("queries answered", [totals(r.queries.answered) for r in ordered]),
            ],
        )
        figures_by_member = [dict(key_figures(r)) for r in ordered]
        page.table(
            ["", *(f"{names.get(r.issuer, r.issuer)} ({r.issuer})" for r in ordered), "all"],
            [[label, *(f[label] for f in figures_by_member), n] for label, n in key_figures(report)],
        )

    entries = report.entries
    page.add("<h2>Watchlist entries</h2>")
    changes = [
        ("proposed", entries.proposed),
        ("registered (approved)", entries.approved),
        ("rejected", totals(entries.rejected)),
        ("corrected", totals(entries.corrected)),
        *((f"deleted: {reason}", n) for reason, n in sorted(entries.deleted.items())),
    ]
    page.figure(
        "Entries proposed, decided, corrected and deleted",
        [c for c, _ in changes],
        [("entries", [n for _, n in changes])],
    )
    page.table(["", "count"], [*changes, ("active at the end of the period", entries.active_at_end)])
    if entries.rejected:
        page.tally_table("rejected, by reason", entries.rejected)
    page.tally_table("corrected, by reason", entries.corrected)
    page.tally_table("deleted, by reason", entries.deleted)

    queries, matches = report.queries, report.matches
    page.add("<h2>Queries and matches</h2>")
    purposes = _merged(queries.sent, queries.answered)
    page.figure(
        "Queries by purpose",
        purposes,
        [
            ("sent", [queries.sent.get(p, 0) for p in purposes]),
            ("answered", [queries.answered.get(p, 0) for p in purposes]),
        ],
    )
    page.table(
        ["purpose", "sent", "answered"],
        [(p, queries.sent.get(p, 0), queries.answered.get(p, 0)) for p in purposes],
    )
    page.table(
        ["", "count"],
        [
            ("faces sent to members", queries.faces_sent),
            ("faces in members' queries answered", queries.faces_answered),
            ("local searches (camera frames)", matches.local_searches),
            ("local hits", matches.local_hits),
            ("hits returned by members", matches.network_hits),
            ("hits returned to members", matches.answered_hits),
        ],
    )
    verdicts = _merged(matches.reviews, matches.feedback_received)
    page.figure(
        "Staff verdicts on alerts",
        verdicts,
        [
            ("by the staff who saw the alert", [matches.reviews.get(v, 0) for v in verdicts]),
            (
                "received by the entry's owner from a member",
                [matches.feedback_received.get(v, 0) for v in verdicts],
            ),
        ],
    )
    page.table(
        ["verdict", "by the staff who saw the alert", "received by the entry's owner from a member"],
        [(v, matches.reviews.get(v, 0), matches.feedback_received.get(v, 0)) for v in verdicts],
    )

    refusals = report.refusals
    page.add("<h2>Refusals</h2>")
    codes = _merged(refusals.requests, refusals.peer_data)
    page.figure(
        "Refusals by reason",
        codes,
        [
            ("requests refused", [refusals.requests.get(c, 0) for c in codes]),
            ("members' data refused", [refusals.peer_data.get(c, 0) for c in codes]),
        ],
        stacked=True,
    )
    page.table(
        ["reason (error code)", "requests", "members' data", "of which members' queries"],
        [
            (c, refusals.requests.get(c, 0), refusals.peer_data.get(c, 0), queries.refused.get(c, 0))
            for c in codes
        ],
    )

    provisions = report.provisions
    page.add("<h2>Law enforcement and other third parties (Art. 27-1)</h2>")
    bases = _merged(provisions.provided, provisions.refused)
    page.figure(
        "Third-party requests by legal basis",
        bases,
        [
            ("provided", [provisions.provided.get(b, 0) for b in bases]),
            ("refused", [provisions.refused.get(b, 0) for b in bases]),
        ],
        stacked=True,
    )
    page.tally_table("received, by requester", provisions.received)
    page.table(
        ["legal basis", "provided", "refused"],
        [(b, provisions.provided.get(b, 0), provisions.refused.get(b, 0)) for b in bases],
    )
    page.table(["", "count"], [("entries provided", provisions.entries_provided)])

    requests = report.subject_requests
    page.add("<h2>Data-subject requests (Art. 33-35)</h2>")
    kinds = sorted(requests.received)
    outcomes = sorted({o for by_kind in requests.closed.values() for o in by_kind})
    page.figure(
        "Requests received, by kind", kinds, [("received", [requests.received.get(k, 0) for k in kinds])]
    )
    page.figure(
        "Requests closed, by kind and outcome",
        sorted(requests.closed),
        [(o, [requests.closed[k].get(o, 0) for k in sorted(requests.closed)]) for o in outcomes],
        stacked=True,
    )
    page.table(
        ["kind", "received", *outcomes],
        [
            (k, requests.received.get(k, 0), *(requests.closed.get(k, {}).get(o, 0) for o in outcomes))
            for k in kinds
        ],
    )
    page.tally_table("refused, by legal ground", requests.refusal_grounds)
    page.table(
        ["", "count"],
        [
            ("closed after the deadline", requests.closed_late),
            ("open at the end of the period", requests.open_at_end),
            ("of which overdue", requests.overdue_at_end),
            ("forwarded here by members", totals(requests.forwarded_in)),
            ("forwarded requests closed here", totals(requests.forwarded_closed)),
        ],
    )
    forwards = _forwards(requests.unrecognized_fields)
    if forwards:
        page.table(
            ["members' forwards", "count"],
            [
                ("received", totals(forwards)),
                ("opened a request", forwards.get("opened", 0)),
                ("added an entry to an open request", forwards.get("merged", 0)),
                ("repeats absorbed (nothing opened)", forwards.get("repeated", 0)),
                ("refused: over the member's daily limit", forwards.get("rate_limited", 0)),
                ("refused: conflicting with the request opened", forwards.get("conflict", 0)),
            ],
        )

    complaints = report.complaints
    page.add("<h2>Complaints (Art. 40)</h2>")
    categories = sorted(complaints.received)
    page.figure(
        "Complaints by category", categories, [("received", [complaints.received[c] for c in categories])]
    )
    page.tally_table("received, by category", complaints.received)
    page.tally_table("received, by channel", complaints.channels)
    page.tally_table("closed, by outcome", complaints.closed)
    page.table(["", "count"], [("open at the end of the period", complaints.open_at_end)])

    page.add("<h2>What is counted</h2>")
    page.add(
        '<dl class="defs">' + "".join(f"<dt>{_e(t)}</dt><dd>{_e(d)}</dd>" for t, d in DEFINITIONS) + "</dl>"
    )
    return "\n".join(page.parts)
