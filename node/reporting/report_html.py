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
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from governance.report import Tally, TransparencyReport, totals
from node.code_labels import label_anywhere
from protocol.fields import format_time

__all__ = [
    "FIGURES",
    "JA",
    "LANGS",
    "PRINT_STYLE",
    "STYLE",
    "effect_rows",
    "figure_rows",
    "key_figures",
    "render_report_html",
    "report_body_html",
]

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
table.figures-table { width: 100%; }
table.figures-table th[scope=row] { font-weight: 600; white-space: nowrap; padding-right: 1rem; }
table.figures-table td.n { font-size: 1.15rem; font-weight: 700; color: #1f3a5f; white-space: nowrap; }
table.figures-table td.def { color: #444; font-size: 0.88rem; }
"""

PRINT_STYLE = """
@page { size: A4; margin: 15mm 14mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  nav, header, footer, form, .noprint, .button, .lang-switch { display: none !important; }
  h2 { break-after: avoid; page-break-after: avoid; }
  table, figure, tr { break-inside: avoid; page-break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""
"""For paper: A4 with margins, no navigation, forms or buttons, no table or chart split over pages."""

LANGS = ("ja", "en")
PARTIAL = "The period has not ended yet: these are the counts so far."
EFFECT_INTRO = (
    "What the matches led to, as the operators who checked each alert by sight recorded it "
    "(効果検証: the effect of the system on its purpose, crime prevention)."
)

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
        "Every request the node refused by authentication, authorisation, policy or validation (staff, "
        "public or a member's sealed message) and every piece of a member's or the organisation's data "
        "it refused, by error code, each counted once. Pages and favicons loaded before sign-in (a GET or "
        "HEAD without credentials) are not refusals.",
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

JA: dict[str, str] = {
    "Transparency report": "透明性レポート",
    "group report": "グループのレポート",
    "node report": "拠点のレポート",
    PARTIAL: "この期間はまだ終わっていません。現時点までの件数です。",
    "Members counted": "集計した会員",
    "At a glance": "概要",
    "figure": "項目",
    "count": "件数",
    "what it counts": "数えているもの",
    "total": "合計",
    "all": "全体",
    "none in this period.": "この期間にはありません。",
    "Effect on the purpose": "利用目的の達成状況(効果検証)",
    EFFECT_INTRO: "一致がどのような結果につながったかを、各アラートを目視で確認した担当者の記録から示します"
    "(犯罪予防という利用目的に対する効果)。",
    "By member": "会員ごと",
    "Registrations, deletions and queries by member": "会員ごとの登録・削除・照会",
    "Watchlist entries": "登録",
    "Entries proposed, decided, corrected and deleted": "登録の提案・判断・訂正・削除",
    "proposed": "提案",
    "registered (approved)": "登録(承認)",
    "registered": "登録",
    "rejected": "却下",
    "corrected": "訂正",
    "deleted": "削除",
    "entries": "登録",
    "active at the end of the period": "期間末の登録件数",
    "rejected, by reason": "却下(理由別)",
    "corrected, by reason": "訂正(理由別)",
    "deleted, by reason": "削除(理由別)",
    "Queries and matches": "照会と一致",
    "Queries by purpose": "利用目的別の照会",
    "purpose": "利用目的",
    "sent": "送信",
    "answered": "回答",
    "queries sent": "送信した照会",
    "queries answered": "回答した照会",
    "faces sent to members": "他の会員へ送った顔の数",
    "faces in members' queries answered": "回答した照会に含まれた顔の数",
    "local searches (camera frames)": "自拠点での照合(カメラの画像)",
    "local hits": "自拠点での一致",
    "hits returned by members": "他の会員から返された一致",
    "hits returned to members": "他の会員へ回答した一致",
    "Staff verdicts on alerts": "アラートに対する担当者の判断",
    "verdict": "判断",
    "confirmed": "本人と確認",
    "false-match": "誤検知",
    "by the staff who saw the alert": "アラートを確認した担当者",
    "received by the entry's owner from a member": "他の会員から登録元への通知",
    "Refusals": "拒否",
    "Refusals by reason": "理由別の拒否",
    "requests refused": "拒否した要求",
    "members' data refused": "拒否した会員のデータ",
    "reason (error code)": "理由(エラーコード)",
    "requests": "要求",
    "members' data": "会員のデータ",
    "of which members' queries": "うち会員からの照会",
    "Law enforcement and other third parties (Art. 27-1)": "捜査機関その他の第三者(法第27条第1項)",
    "Third-party requests by legal basis": "法的根拠別の第三者からの要請",
    "received, by requester": "受付(要請元別)",
    "legal basis": "法的根拠",
    "provided": "提供",
    "refused": "拒否",
    "entries provided": "提供した登録",
    "Data-subject requests (Art. 33-35)": "本人からの開示等請求(法第33～35条)",
    "Requests received, by kind": "種類別の受付",
    "Requests closed, by kind and outcome": "種類・結果別の完了",
    "kind": "種類",
    "received": "受付",
    "refused, by legal ground": "拒否(法的根拠別)",
    "closed after the deadline": "期限後に完了",
    "open at the end of the period": "期間末に未完了",
    "of which overdue": "うち期限超過",
    "forwarded here by members": "他の会員から転送された請求",
    "forwarded requests closed here": "転送された請求のうち完了",
    "members' forwards": "会員からの転送",
    "opened a request": "請求を受け付けた",
    "added an entry to an open request": "受付中の請求に登録を追加した",
    "repeats absorbed (nothing opened)": "重複(新たな受付なし)",
    "refused: over the member's daily limit": "拒否: 会員の1日の上限を超過",
    "refused: conflicting with the request opened": "拒否: 受付済みの請求と矛盾",
    "Complaints (Art. 40)": "苦情(法第40条)",
    "Complaints by category": "種類別の苦情",
    "received, by category": "受付(種類別)",
    "received, by channel": "受付(受付方法別)",
    "closed, by outcome": "完了(結果別)",
    "What is counted": "数え方",
}
"""The report's labels in Japanese; a text not listed (an error code, a node id) is shown as it is."""

DEFINITIONS_JA = (
    ("期間", "各件数は、その出来事が起きた時点を含む期間 [開始, 終了)(UTC、終了時点を含まない)に数えます。"),
    (
        "登録",
        "提案は提案日で、承認・訂正・削除・満了は拠点のイベントログに署名された時刻で、却下は責任者が判断した日で数えます。",
    ),
    (
        "照会",
        "送信: 顔を1件以上含む他の会員への照会(ネットワーク照会と開示等請求のための検索)。回答・拒否: "
        "他の会員から受けた照会を監査ログの記録どおりに数えます。",
    ),
    (
        "一致",
        "グループの基準値以上の一致を、他の会員からこの拠点へ返されたもの、この拠点から他の会員へ返したもの、"
        "自拠点で見つかったものに分けて数えます。誤検知は担当者のアラートに対する判断です。",
    ),
    (
        "拒否",
        "認証・権限・方針・入力検査で拒否した要求(担当者・一般・会員の封緘されたメッセージ)と、拒否した会員または"
        "団体のデータを、エラーコード別に1回ずつ数えます。ログイン前のページやファビコンの読み込み(資格情報のない"
        "GET・HEAD)は拒否に数えません。",
    ),
    (
        "第三者提供",
        "捜査機関その他の第三者からの要請(法第27条第1項)を受付日で数えます。提供は法的根拠がある場合に限り、"
        "提供の前に署名されたイベントとして記録します。",
    ),
    (
        "開示等請求と苦情",
        "受付日と完了日で数えます。他の会員から転送された請求は別に数えるため、グループの合計では一人の請求を"
        "1回だけ数えます。",
    ),
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


# -- charts -----------------------------------------------------------------------------------


def _svg(figure: Any, prefix: str, label: str) -> str:
    """The figure as inline SVG: no XML prolog or DTD, ids prefixed, labelled for screen readers."""
    import matplotlib

    out = io.StringIO()
    with (
        _RC_LOCK,
        matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": prefix}),
        warnings.catch_warnings(),
    ):
        # text stays text (fonttype none): the reader's browser draws Japanese labels in its own fonts
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
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
    def __init__(self, lang: str = "en") -> None:
        self.parts: list[str] = []
        self.charts = 0
        self.lang = lang

    def tr(self, text: str) -> str:
        """``text`` in the page's language: the Japanese of a label or of a code's name (``deleted:
        error`` is both), else the text itself (a node id, an error code)."""
        if self.lang != "ja":
            return text
        head, colon, code = text.partition(": ")
        if colon and head in JA and (name := label_anywhere(code, 0)):
            return f"{JA[head]}: {name}"
        return JA.get(text) or label_anywhere(text, 0) or text

    def heading(self, text: str) -> None:
        self.add(f"<h2>{_e(self.tr(text))}</h2>")

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
        title = self.tr(title)
        categories = [self.tr(c) for c in categories]
        series = [(self.tr(name), values) for name, values in series]
        if not categories or not any(any(values) for _, values in series):
            self.add(f'<p class="empty">{_e(title)}: {_e(self.tr("none in this period."))}</p>')
            return
        if stacked:
            series = [s for s in series if any(s[1])]
        self.charts += 1
        svg = bar_chart(title, categories, series, prefix=f"c{self.charts}", stacked=stacked)
        self.add(f"<figure>{svg}</figure>")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        if not rows:
            return
        head = "".join(f"<th>{_e(self.tr(h))}</th>" for h in headers)
        body = "".join(
            "<tr>"
            + "".join(
                f'<td class="n">{_e(c)}</td>' if isinstance(c, int) else f"<td>{_e(self.tr(str(c)))}</td>"
                for c in row
            )
            + "</tr>"
            for row in rows
        )
        self.add(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def tally_table(self, label: str, tally: Tally) -> None:
        self.table([label, "count"], [*sorted(tally.items()), ("total", totals(tally))])


FIGURES: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "registered",
        "entries registered",
        "登録した件数",
        "Entries a responsible officer approved in the period, each a signed registration event.",
        "責任者が期間中に承認した登録(署名された登録イベント)の件数です。",
    ),
    (
        "rejected",
        "proposals rejected",
        "登録を却下した件数",
        "Registration proposals an officer rejected in the period, by the date of the decision.",
        "責任者が期間中に却下した登録の提案の件数です(判断した日で数えます)。",
    ),
    (
        "corrected",
        "entries corrected",
        "訂正した件数",
        "Corrections of registered entries signed in the period, whatever their reason.",
        "期間中に署名された登録内容の訂正の件数です(理由を問いません)。",
    ),
    (
        "deleted",
        "entries deleted (incl. expiry)",
        "削除した件数(保有期間満了を含む)",
        "Entries deleted by staff or erased when their retention period ran out in the period.",
        "期間中に担当者が削除した登録と、保有期間が満了して消去された登録の件数です。",
    ),
    (
        "active",
        "entries active at the end",
        "期間末の登録件数",
        "Entries registered and not deleted or expired at the end of the period.",
        "期間の終わりの時点で登録されていて、削除も満了もしていない件数です。",
    ),
    (
        "sent",
        "queries sent to members",
        "他の会員への照会",
        "Queries with at least one face this node sent to the other members of the group.",
        "この拠点が共同利用グループの他の会員へ送った、顔を1件以上含む照会の件数です。",
    ),
    (
        "answered",
        "members' queries answered",
        "他の会員からの照会への回答",
        "Queries from other members this node answered (with or without a hit).",
        "他の会員からの照会にこの拠点が回答した件数です(該当の有無を問いません)。",
    ),
    (
        "local",
        "local matches",
        "自拠点での一致",
        "Camera faces at or above the group's threshold against this node's own entries.",
        "この拠点のカメラの顔が自拠点の登録とグループの基準値以上で一致した件数です。",
    ),
    (
        "network",
        "hits returned by members",
        "他の会員から返された一致",
        "Hits the other members returned for this node's queries, each signed by the entry's owner.",
        "この拠点の照会に対して他の会員が返した一致の件数です(登録した会員の署名付き)。",
    ),
    (
        "for_members",
        "hits answered for members",
        "他の会員へ回答した一致",
        "Hits this node returned to other members' queries from its own entries.",
        "他の会員からの照会に対して、この拠点が自らの登録から返した一致の件数です。",
    ),
    (
        "confirmed",
        "matches confirmed by staff",
        "担当者が本人と確認した一致",
        "Alerts that this node's staff checked by sight and confirmed as the registered person.",
        "この拠点の担当者が目視で確認し、登録された本人であると判断したアラートの件数です。",
    ),
    (
        "false",
        "false matches reported by staff",
        "担当者が誤検知と判断した一致",
        "Alerts that this node's staff checked by sight and judged not to be the registered person.",
        "この拠点の担当者が目視で確認し、登録された本人ではないと判断したアラートの件数です。",
    ),
    (
        "refusals",
        "refusals",
        "拒否した要求",
        "Requests refused by authentication, authorisation, policy or validation, and members' data "
        "refused; pages loaded before sign-in are not counted.",
        "認証・権限・方針・入力検査により拒否した要求と、拒否した他の会員のデータの件数です"
        "(ログイン前のページ表示は数えません)。",
    ),
    (
        "provisions",
        "law-enforcement and other third-party requests",
        "捜査機関等からの提供要請",
        "Requests for data from the police and other third parties (APPI Art. 27-1) received.",
        "捜査機関その他の第三者から受けた情報提供の要請(法第27条第1項)の件数です。",
    ),
    (
        "subject",
        "data-subject requests",
        "本人からの開示等請求",
        "Disclosure, correction, deletion and cease-of-use requests received from data subjects.",
        "本人から受けた開示・訂正・削除・利用停止の請求の件数です。",
    ),
    (
        "complaints",
        "complaints",
        "苦情",
        "Complaints received by this node, by any channel.",
        "この拠点が受けた苦情の件数です(受付方法を問いません)。",
    ),
)
"""The key figures: id, English and Japanese label, English and Japanese one-sentence definition."""


def _figure_values(report: TransparencyReport) -> dict[str, int]:
    entries, queries, matches = report.entries, report.queries, report.matches
    return {
        "registered": entries.approved,
        "rejected": totals(entries.rejected),
        "corrected": totals(entries.corrected),
        "deleted": totals(entries.deleted),
        "active": entries.active_at_end,
        "sent": totals(queries.sent),
        "answered": totals(queries.answered),
        "local": matches.local_hits,
        "network": matches.network_hits,
        "for_members": matches.answered_hits,
        "confirmed": matches.reviews.get("confirmed", 0),
        "false": matches.reviews.get("false-match", 0),
        "refusals": totals(report.refusals.requests) + totals(report.refusals.peer_data),
        "provisions": totals(report.provisions.received),
        "subject": totals(report.subject_requests.received),
        "complaints": totals(report.complaints.received),
    }


def figure_rows(report: TransparencyReport, lang: str = "en") -> list[tuple[str, int, str]]:
    """Each key figure as (label, count, one-sentence definition) in ``lang`` (``ja`` or ``en``)."""
    values = _figure_values(report)
    ja = lang == "ja"
    return [(lj if ja else le, values[k], dj if ja else de) for k, le, lj, de, dj in FIGURES]


def key_figures(report: TransparencyReport, lang: str = "en") -> list[tuple[str, int]]:
    """The handful of numbers shown first (and printed by ``watchnet report``)."""
    return [(label, n) for label, n, _ in figure_rows(report, lang)]


def effect_rows(report: TransparencyReport, lang: str = "en") -> list[tuple[str, str, str]]:
    """The effect on the purpose (利用目的の達成状況): what the matches led to, as operators recorded
    it, as (label, value, definition). A share is left out when nothing was reviewed."""
    matches = report.matches
    confirmed = matches.reviews.get("confirmed", 0)
    false = matches.reviews.get("false-match", 0)
    reviewed = confirmed + false
    shown = matches.local_hits + matches.network_hits
    fed_confirmed = matches.feedback_received.get("confirmed", 0)
    fed_false = matches.feedback_received.get("false-match", 0)
    share = f"{100 * confirmed / reviewed:.0f}%" if reviewed else "-"
    ja = lang == "ja"
    rows = [
        (
            ("一致してアラートとなった件数", "matches shown to staff as alerts"),
            str(shown),
            (
                "自拠点での一致と他の会員から返された一致の合計で、担当者の確認を待つアラートになります。",
                "Local matches plus hits returned by members: each is an alert waiting for staff to check it.",
            ),
        ),
        (
            ("担当者が確認した件数", "alerts reviewed by staff"),
            str(reviewed),
            (
                "担当者が目視で確認し、本人か誤検知かの結果を記録したアラートの件数です。",
                "Alerts on which an operator looked at the faces and recorded an outcome.",
            ),
        ),
        (
            ("本人と確認", "confirmed: the registered person"),
            str(confirmed),
            (
                "担当者が登録された本人であると記録した件数です。",
                "Reviews in which the operator recorded that it was the registered person.",
            ),
        ),
        (
            ("誤検知", "false match: not the person"),
            str(false),
            (
                "担当者が本人ではないと記録した件数です。登録した会員に通知されます。",
                "Reviews in which the operator recorded that it was not the person; the entry's owner is told.",
            ),
        ),
        (
            ("確認した一致のうち本人だった割合", "share of reviewed matches confirmed"),
            share,
            (
                "本人と確認した件数を確認した件数で割った値です(確認が0件のときは「-」)。",
                "Confirmed divided by reviewed (shown as - when nothing was reviewed).",
            ),
        ),
        (
            ("自拠点の登録について他の会員が本人と確認", "members confirmed our entries"),
            str(fed_confirmed),
            (
                "この拠点の登録による一致を、他の会員の担当者が本人と確認して知らせた件数です。",
                "Verdicts from other members' staff that a match on this node's entry was the person.",
            ),
        ),
        (
            ("自拠点の登録について他の会員が誤検知と報告", "members reported false matches on our entries"),
            str(fed_false),
            (
                "この拠点の登録による一致を、他の会員の担当者が誤検知と知らせた件数です。",
                "Verdicts from other members' staff that a match on this node's entry was not the person.",
            ),
        ),
        (
            ("誤りとして削除・訂正した登録", "entries deleted or corrected as errors"),
            str(report.entries.deleted.get("error", 0) + report.entries.corrected.get("error", 0)),
            (
                "理由「誤り」で削除または訂正した登録の件数です。",
                "Entries deleted or corrected with the reason error in the period.",
            ),
        ),
    ]
    return [(label[0 if ja else 1], value, d[0 if ja else 1]) for label, value, d in rows]


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
    lang: str = "en",
    when: Callable[[datetime], str] | None = None,
) -> str:
    """The page for ``report``; ``names`` gives display names for node ids, ``member_reports`` a group's
    parts, ``lang`` the language (``ja`` or ``en``) and ``when`` how a moment is written (UTC if not given).
    It prints on A4 as it is (``PRINT_STYLE``)."""
    lang = lang if lang in LANGS else "en"
    who = (names or {}).get(report.issuer, report.issuer)
    title = (
        f"{JA['Transparency report'] if lang == 'ja' else 'Transparency report'} {report.period.label}: {who}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{STYLE}{PRINT_STYLE}</style>\n</head>\n<body>\n"
        + report_body_html(report, names=names, member_reports=member_reports, lang=lang, when=when)
        + "\n</body>\n</html>\n"
    )


def report_body_html(
    report: TransparencyReport,
    *,
    names: Mapping[str, str] | None = None,
    member_reports: Sequence[TransparencyReport] = (),
    lang: str = "en",
    when: Callable[[datetime], str] | None = None,
) -> str:
    """The report's headings, figures, charts and tables without the page around them (``STYLE`` styles
    them), for a page that has its own frame, such as the staff console's."""
    names = names or {}
    who = names.get(report.issuer, report.issuer)
    period = report.period
    page = _Page(lang if lang in LANGS else "en")
    tr = page.tr
    at = when or format_time
    scope = "group report" if report.scope.value == "group" else "node report"
    page.add(f"<h1>{_e(tr('Transparency report'))}: {_e(who)}</h1>")
    if page.lang == "ja":
        page.add(
            f'<p class="meta">{_e(tr(scope))} {_e(period.label)}({_e(at(period.start))}から'
            f"{_e(at(period.end))}の前まで) &middot; グループ {_e(report.group_id)} &middot; "
            f"管理文書 第{report.manifest_version}版 &middot; 集計 {_e(at(report.generated_at))}</p>"
        )
    else:
        page.add(
            f'<p class="meta">{_e(scope)} for {_e(period.label)} ({_e(at(period.start))} to '
            f"{_e(at(period.end))}, end excluded) &middot; group {_e(report.group_id)} &middot; manifest "
            f"version {report.manifest_version} &middot; counted at {_e(at(report.generated_at))}</p>"
        )
    if not report.complete:
        page.add(f'<p class="partial">{_e(tr(PARTIAL))}</p>')
    if report.scope.value == "group":
        members = ", ".join(f"{names.get(m, m)} ({m})" for m in report.members)
        page.add(f"<p>{_e(tr('Members counted'))} ({len(report.members)}): {_e(members)}</p>")

    page.heading("At a glance")
    rows = "".join(
        f'<tr data-figure="{_e(key)}"><th scope="row">{_e(label)}</th><td class="n">{n}</td>'
        f'<td class="def">{_e(definition)}</td></tr>'
        for (key, *_), (label, n, definition) in zip(FIGURES, figure_rows(report, page.lang), strict=True)
    )
    page.add(
        f'<table class="figures-table" id="key-figures"><thead><tr><th>{_e(tr("figure"))}</th>'
        f"<th>{_e(tr('count'))}</th><th>{_e(tr('what it counts'))}</th></tr></thead><tbody>{rows}</tbody></table>"
    )

    page.heading("Effect on the purpose")
    page.add(f'<p class="help">{_e(tr(EFFECT_INTRO))}</p>')
    rows = "".join(
        f'<tr><th scope="row">{_e(label)}</th><td class="n">{_e(value)}</td><td class="def">{_e(d)}</td></tr>'
        for label, value, d in effect_rows(report, page.lang)
    )
    page.add(
        f'<table class="figures-table" id="effect"><thead><tr><th>{_e(tr("figure"))}</th>'
        f"<th>{_e(tr('count'))}</th><th>{_e(tr('what it counts'))}</th></tr></thead><tbody>{rows}</tbody></table>"
    )

    if member_reports:
        page.heading("By member")
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
    page.heading("Watchlist entries")
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
    page.heading("Queries and matches")
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
    page.heading("Refusals")
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
    page.heading("Law enforcement and other third parties (Art. 27-1)")
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
    page.heading("Data-subject requests (Art. 33-35)")
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
    page.heading("Complaints (Art. 40)")
    categories = sorted(complaints.received)
    page.figure(
        "Complaints by category", categories, [("received", [complaints.received[c] for c in categories])]
    )
    page.tally_table("received, by category", complaints.received)
    page.tally_table("received, by channel", complaints.channels)
    page.tally_table("closed, by outcome", complaints.closed)
    page.table(["", "count"], [("open at the end of the period", complaints.open_at_end)])

    page.heading("What is counted")
    definitions = DEFINITIONS_JA if page.lang == "ja" else DEFINITIONS
    page.add(
        '<dl class="defs">' + "".join(f"<dt>{_e(t)}</dt><dd>{_e(d)}</dd>" for t, d in definitions) + "</dl>"
    )
    return "\n".join(page.parts)
