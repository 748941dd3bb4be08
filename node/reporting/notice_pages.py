"""The public notice as a web page, a QR code and a printable A4 sign (APPI Art. 20-1, 21, 27-5-3).

Everything here renders one ``governance.notice.NoticeDocument``, built from the manifest the
node enforces and the node's ``[notice]`` settings, so the page, the text and the sign at the
store entrance cannot say different things. The page is plain HTML: no script, no external
asset, a ``lang`` attribute, headings, a link to the other language, and a layout that reads
on a phone. The QR code (``segno``) and the sign (``matplotlib`` with the IPAexGothic font that
the ``matplotlib-fontja`` package ships) are real image files a store can print.
"""

from __future__ import annotations

import html
import importlib.util
import io
import ipaddress
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import segno

from governance.manifest import LocalizedText, Manifest
from governance.notice import (
    LANGUAGES,
    LocalNotice,
    NoticeDates,
    NoticeDocument,
    Operator,
    Section,
    build_notice,
    current_members,
)
from node.config import NOTICE_URL_RE, NodeConfig
from node.local_time import LocalTimes
from protocol.errors import ConfigurationError

__all__ = [
    "COMPLAINT_TEXT",
    "NOTICE_PATH",
    "ORGANISATION_ZONE",
    "SignFormat",
    "check_notice_url",
    "complaint_received_html",
    "complaint_result_html",
    "configured_base",
    "group_notice_html",
    "local_notice",
    "node_notice",
    "node_notice_html",
    "notice_url",
    "qr_png",
    "qr_svg",
    "render_html",
    "render_sign",
]

NOTICE_PATH = "/notice"
SignFormat = Literal["pdf", "png"]
A4_INCHES = (210 / 25.4, 297 / 25.4)
LANGUAGE_NAMES = {"ja": "日本語", "en": "English"}
QR_ERROR = "m"
"""Error correction level M (15%): a printed sign survives a little dirt or glare."""

_STYLE = """
body{font-family:system-ui,-apple-system,"Hiragino Sans","Noto Sans JP",Meiryo,sans-serif;
line-height:1.6;margin:0 auto;max-width:46rem;padding:1rem;color:#111;background:#fff}
h1{font-size:1.5rem;line-height:1.3}h2{font-size:1.2rem;border-bottom:2px solid #1f3a5f;
padding-bottom:.2rem;margin-top:2rem}h3{font-size:1.05rem;margin-bottom:.3rem}
dl{display:grid;grid-template-columns:fit-content(40%) 1fr;gap:.2rem 1rem}dt{font-weight:bold}dd{margin:0}
@media (max-width:32rem){dl{grid-template-columns:1fr}dd{margin-bottom:.5rem}}
nav{text-align:right}a{color:#0b57d0}footer{margin-top:2rem;font-size:.9rem;color:#444}
img.qr{width:10rem;height:10rem}
""".strip()


def _operator_name(config: NodeConfig, manifest: Manifest) -> LocalizedText:
    if config.notice.operator is not None:
        return config.notice.operator
    me = manifest.member(config.node_id)
    if me is not None:
        return me.name
    name = config.display_name or config.node_id
    return LocalizedText(name, name)


def local_notice(config: NodeConfig, manifest: Manifest, retention_days: int | None = None) -> LocalNotice:
    """This node's part of the notice, from its settings (falling back to the manifest's words)."""
    settings = config.notice
    recording = settings.recording_retention
    return LocalNotice(
        node_id=config.node_id,
        operator=Operator(
            name=_operator_name(config, manifest),
            contact=settings.contact or manifest.joint_use.administrator.contact,
            address=settings.address,
            representative=settings.representative,
        ),
        sites=settings.sites,
        retention_days=retention_days,
        recording_retention_days=None if recording is None else recording.days,
        request_identity=settings.request_identity,
        request_response_days=settings.request_response_days,
    )


ORGANISATION_ZONE = ZoneInfo("Asia/Tokyo")
"""The zone the organisation's group notice shows times in (its members are in Japan)."""


def node_notice(
    manifest: Manifest, config: NodeConfig, lang: str, retention_days: int | None = None
) -> NoticeDocument:
    """The node's notice document in ``lang``: the manifest's five items plus this business's part."""
    times = LocalTimes(lang, config.console.zone)
    return build_notice(
        manifest, lang, local_notice(config, manifest, retention_days), NoticeDates(times.day, times.when)
    )


def check_notice_url(url: str) -> str:
    """``url`` if it is an http(s) URL a phone can open from a QR code (what ``--url`` accepts)."""
    if not NOTICE_URL_RE.fullmatch(url):
        raise ConfigurationError(f"--url {url!r:.80} is not an http(s) URL like https://shop.example/notice")
    return url


def public_url_warning(url: str) -> str | None:
    """Why a printed QR code to ``url`` would fail a shopper: not https, or an address a phone on
    the street cannot reach (loopback, private, link-local); None when it looks public."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if (
        host == "localhost"
        or host.endswith((".local", ".internal", ".lan"))
        or (address is not None and (address.is_loopback or address.is_private or address.is_link_local))
    ):
        return (
            f"{url} points at {host}, which a shopper's phone cannot reach; print the sign with the "
            "public https address of the notice page (--url or [notice] url)"
        )
    if parts.scheme != "https":
        return f"{url} is not https: a phone opening the QR code may warn or be redirected; use https"
    return None


def configured_base(config: NodeConfig) -> str:
    """``http://HOST:PORT`` of the address the config says the node listens on (``[listen]``).

    The notice QR code's target when ``[notice] url`` is not set: taken from configuration, never
    from a request's ``Host`` header, so nobody can make the node hand out a QR code to their site.
    """
    host = f"[{config.host}]" if ":" in config.host else config.host
    return f"http://{host}:{config.port}"


def notice_url(config: NodeConfig, override: str | None = None, request_base: str | None = None) -> str:
    """The public URL for the QR code: ``override``, else ``[notice] url``, else ``request_base``
    (the caller's configured address, e.g. ``configured_base``; never a request header)."""
    if override:
        if not NOTICE_URL_RE.fullmatch(override):
            raise ConfigurationError(
                f"--url {override!r:.80} is not an http(s) URL like https://shop.example/notice"
            )
        return override
    if config.notice.url:
        return config.notice.url
    if request_base:
        return request_base.rstrip("/") + NOTICE_PATH
    raise ConfigurationError(
        f"{config.directory / 'config.toml'}: notice.url is not set; set the public URL of this "
        "node's notice page under [notice] (or pass --url), so the printed QR code points at it"
    )


# -- HTML -----------------------------------------------------------------------------------------


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _html_section(section: Section, level: int, out: list[str]) -> None:
    out.append(f'<section id="{_e(section.id)}" aria-labelledby="{_e(section.id)}-h">')
    out.append(f'<h{level} id="{_e(section.id)}-h">{_e(section.heading)}</h{level}>')
    out += [f"<p>{_e(p)}</p>" for p in section.paragraphs]
    if section.bullets:
        out.append("<ul>" + "".join(f"<li>{_e(b)}</li>" for b in section.bullets) + "</ul>")
    if section.fields:
        out.append(
            "<dl>"
            + "".join(f"<dt>{_e(label)}</dt><dd>{_e(value)}</dd>" for label, value in section.fields)
            + "</dl>"
        )
    out += [f"<p>{_e(n)}</p>" for n in section.notes]
    for sub in section.subsections:
        _html_section(sub, min(level + 1, 6), out)
    out.append("</section>")


COMPLAINT_TEXT = {
    "ja": {
        "heading": "苦情の申出（この事業者の窓口へ送信されます）",
        "heading_org": "苦情の申出（認定個人情報保護団体へ送信されます）",
        "about": "どの参加事業者についての苦情ですか（任意）",
        "about_none": "特定しない・わからない",
        "error.about_member": "参加事業者は一覧から選んでください。",
        "lead": "カメラや顔識別データの取扱いについての苦情を、このフォームから申し出ることができます。担当者が確認し、連絡先をご記入の場合はご連絡します。",
        "category": "内容の種類",
        "summary": "苦情の内容（2000字以内）",
        "contact": "連絡先（任意: 電話番号又はメールアドレス）",
        "submit": "送信する",
        "misidentification": "別人と誤って識別された",
        "registration": "登録についての苦情",
        "data-handling": "データの取扱い",
        "notice": "掲示・お知らせの内容",
        "request-handling": "開示等の請求への対応",
        "other": "その他",
        "received_title": "苦情を受け付けました",
        "received": "受付番号: {reference}（受付日時: {when}）。お問い合わせの際はこの番号をお伝えください。",
        "error_title": "送信できませんでした",
        "back": "お知らせに戻る",
        "error.category": "内容の種類を一覧から選んでください。",
        "error.summary": "苦情の内容を1字以上2000字以内で記入してください。",
        "error.contact": "連絡先は200字以内で記入してください。",
        "error.oversized": "送信された内容が大きすぎます。短くしてもう一度送信してください。",
        "error.rate_limited": "このアドレスからの送信が多すぎます。1分ほど待ってから送信してください。",
        "error.other": "送信された内容を受け付けられませんでした（{code}）。",
    },
    "en": {
        "heading": "Make a complaint (sent to this business's contact point)",
        "heading_org": "Make a complaint (sent to the certified organisation)",
        "about": "Which member is it about (optional)",
        "about_none": "None in particular / not sure",
        "error.about_member": "Please choose the member from the list.",
        "lead": "You may complain about the cameras or the handling of face-recognition data with this form. Staff review it and, if you leave a contact, get back to you.",
        "category": "What it is about",
        "summary": "Your complaint (up to 2000 characters)",
        "contact": "Contact (optional: telephone or e-mail)",
        "submit": "Send",
        "misidentification": "I was mistaken for someone else",
        "registration": "A registration",
        "data-handling": "Handling of the data",
        "notice": "The sign or this notice",
        "request-handling": "How a request was handled",
        "other": "Something else",
        "received_title": "Your complaint has been received",
        "received": "Reference: {reference} (received {when}). Please quote this reference if you contact us.",
        "error_title": "The complaint could not be sent",
        "back": "Back to the notice",
        "error.category": "Please choose what the complaint is about from the list.",
        "error.summary": "Please write your complaint in 1 to 2000 characters.",
        "error.contact": "Please keep the contact to 200 characters.",
        "error.oversized": "What was sent is too large; please shorten it and send it again.",
        "error.rate_limited": "Too many complaints from this address; please wait a minute and send it again.",
        "error.other": "What was sent could not be accepted ({code}).",
    },
}
"""The public complaint form's words, and its own error messages (never the API's English)."""
COMPLAINT_CATEGORY_ORDER = (
    "misidentification",
    "registration",
    "data-handling",
    "notice",
    "request-handling",
    "other",
)


def _complaint_form(lang: str, action: str, members: Sequence[tuple[str, str]] = ()) -> list[str]:
    """The form; with ``members`` (node id, name) it is the organisation's, asking which member."""
    t = COMPLAINT_TEXT[lang]
    options = "".join(f'<option value="{_e(c)}">{_e(t[c])}</option>' for c in COMPLAINT_CATEGORY_ORDER)
    about = []
    if members:
        choices = "".join(f'<option value="{_e(n)}">{_e(name)} ({_e(n)})</option>' for n, name in members)
        about = [
            f'<p><label for="c-about">{_e(t["about"])}</label><br>'
            f'<select id="c-about" name="about_member"><option value="">{_e(t["about_none"])}</option>'
            f"{choices}</select></p>"
        ]
    return [
        '<section id="complaint" aria-labelledby="complaint-h">',
        f'<h2 id="complaint-h">{_e(t["heading_org" if members else "heading"])}</h2>',
        f"<p>{_e(t['lead'])}</p>",
        f'<form method="post" action="{_e(action)}" accept-charset="utf-8">',
        f'<input type="hidden" name="lang" value="{_e(lang)}">',
        f'<p><label for="c-category">{_e(t["category"])}</label><br>'
        f'<select id="c-category" name="category" required>{options}</select></p>',
        *about,
        f'<p><label for="c-summary">{_e(t["summary"])}</label><br>'
        '<textarea id="c-summary" name="summary" rows="6" cols="40" maxlength="2000" required></textarea></p>',
        f'<p><label for="c-contact">{_e(t["contact"])}</label><br>'
        '<input id="c-contact" name="contact" maxlength="200" autocomplete="email"></p>',
        f'<p><button type="submit">{_e(t["submit"])}</button></p>',
        "</form>",
        "</section>",
    ]


def complaint_result_html(lang: str, title: str, lines: list[str], back: str) -> str:
    """The page a complaint form post answers with: received (with its reference) or refused."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            f'<html lang="{_e(lang)}">',
            '<head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title><style>{_STYLE}</style></head>",
            "<body><main>",
            f"<h1>{_e(title)}</h1>",
            *[f"<p>{_e(line)}</p>" for line in lines],
            f'<p><a href="{_e(back)}">{_e(COMPLAINT_TEXT[lang]["back"])}</a></p>',
            "</main></body></html>",
            "",
        ]
    )


def complaint_received_html(lang: str, reference: str, when: str) -> str:
    """The page a complaint form post answers with when it was taken: its reference and time."""
    t = COMPLAINT_TEXT[lang]
    return complaint_result_html(
        lang,
        t["received_title"],
        [t["received"].format(reference=reference, when=when)],
        f"{NOTICE_PATH}?lang={lang}",
    )


def render_html(
    document: NoticeDocument,
    *,
    qr_src: str | None = None,
    notice_href: str | None = None,
    complaint_action: str | None = None,
    complaint_members: Sequence[tuple[str, str]] = (),
) -> str:
    """A complete, self-contained HTML page for ``document`` (every text escaped).

    The language switch links to ``?lang=..`` on the same path; ``qr_src`` adds the QR code
    image (e.g. ``notice/qr.svg``), ``notice_href`` shows the page's public address in words.
    """
    lang = document.lang
    out = [
        "<!DOCTYPE html>",
        f'<html lang="{_e(lang)}">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(document.title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        "<header>",
        '<nav aria-label="Language / 言語">'
        + " | ".join(
            f'<a href="?lang={other}" hreflang="{other}" lang="{other}">{_e(LANGUAGE_NAMES[other])}</a>'
            for other in LANGUAGES
            if other != lang
        )
        + "</nav>",
        f"<h1>{_e(document.title)}</h1>",
        *[f"<p>{_e(p)}</p>" for p in document.lead],
        "</header>",
        "<main>",
    ]
    for section in document.sections:
        _html_section(section, 2, out)
    if complaint_action:
        out += _complaint_form(lang, complaint_action, complaint_members)
    out.append("</main>")
    out.append("<footer>")
    out += [f"<p>{_e(line)}</p>" for line in document.footer]
    if qr_src:
        alt = "このページのQRコード" if lang == "ja" else "QR code for this page"
        out.append(f'<p><img class="qr" src="{_e(qr_src)}" alt="{_e(alt)}" width="160" height="160"></p>')
    if notice_href:
        out.append(f'<p><a href="{_e(notice_href)}">{_e(notice_href)}</a></p>')
    out += ["</footer>", "</body>", "</html>", ""]
    return "\n".join(out)


def node_notice_html(
    manifest: Manifest,
    config: NodeConfig,
    lang: str,
    retention_days: int | None = None,
    *,
    qr_src: str | None = None,
    complaint_action: str | None = None,
) -> str:
    return render_html(
        node_notice(manifest, config, lang, retention_days),
        qr_src=qr_src,
        notice_href=config.notice.url,
        complaint_action=complaint_action,
    )


def group_notice_html(
    manifest: Manifest, lang: str, *, qr_src: str | None = None, complaint_action: str | None = None
) -> str:
    """The organisation's group-wide notice page (``watchnet gov serve``), with its complaint form
    (asking which member it is about) when ``complaint_action`` is given."""
    times = LocalTimes(lang, ORGANISATION_ZONE)
    return render_html(
        build_notice(manifest, lang, dates=NoticeDates(times.day, times.when)),
        qr_src=qr_src,
        complaint_action=complaint_action,
        complaint_members=[(n, name.get(lang)) for n, name in current_members(manifest)],
    )


# -- QR code --------------------------------------------------------------------------------------


def _qr(url: str) -> segno.QRCode:
    return segno.make(url, error=QR_ERROR, micro=False)


def qr_png(url: str, *, scale: int = 8) -> bytes:
    """A PNG QR code for ``url`` with the standard 4-module quiet zone, black on white."""
    out = io.BytesIO()
    _qr(url).save(out, kind="png", scale=scale, border=4, dark="black", light="white")
    return out.getvalue()


def qr_svg(url: str, *, scale: int = 8) -> bytes:
    """An SVG QR code for ``url`` (scales to any print size), titled with the URL."""
    out = io.BytesIO()
    _qr(url).save(
        out, kind="svg", scale=scale, border=4, dark="black", light="white", title=url, xmldecl=True
    )
    return out.getvalue()


# -- the A4 sign ----------------------------------------------------------------------------------


def _japanese_font() -> Path:
    """IPAexGothic as shipped by ``matplotlib-fontja`` (found without importing it: its import restyles matplotlib)."""
    spec = importlib.util.find_spec("matplotlib_fontja")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "fonts" / "ipaexg.ttf"
        if path.is_file():
            return path
    raise ConfigurationError(
        "the Japanese font for signs is missing: install the 'matplotlib-fontja' package (IPAexGothic)"
    )


@dataclass(frozen=True)
class _SignTexts:
    operator: LocalizedText
    contact: LocalizedText
    administrator: LocalizedText
    purposes: tuple[tuple[str, str], ...]


def _sign_texts(manifest: Manifest, config: NodeConfig, site_id: str | None) -> _SignTexts:
    """The sign's words, taken from the same notice documents as the page."""
    ja, en = (node_notice(manifest, config, lang) for lang in LANGUAGES)
    operator = local_notice(config, manifest).operator
    name = operator.name
    if site_id is not None:
        site = next((s for s in config.notice.sites if s.site_id == site_id), None)
        if site is None:
            known = ", ".join(s.site_id for s in config.notice.sites) or "none"
            raise ConfigurationError(f"site {site_id!r} is not in [[notice.sites]] (known: {known})")
        name = LocalizedText(f"{name.ja}　{site.name.ja}", f"{name.en}, {site.name.en}")
    purposes_ja, purposes_en = (d.section("purposes") for d in (ja, en))
    assert purposes_ja is not None and purposes_en is not None
    return _SignTexts(
        operator=name,
        contact=operator.contact,
        administrator=manifest.joint_use.administrator.name,
        purposes=tuple(zip(purposes_ja.bullets, purposes_en.bullets, strict=True)),
    )


def render_sign(
    manifest: Manifest,
    config: NodeConfig,
    url: str,
    fmt: SignFormat = "pdf",
    *,
    site_id: str | None = None,
    dpi: int = 200,
) -> bytes:
    """A printable A4 portrait 'face-recognition camera in operation' sign, in Japanese and English.

    It names the operator (and site), the purposes from the manifest, the contact point and the
    joint use, and carries a QR code to ``url`` drawn as vector squares (sharp at any size in
    the PDF). ``fmt`` is ``pdf`` (one A4 page, font embedded) or ``png`` (``dpi`` dots per inch).
    """
    if fmt not in ("pdf", "png"):
        raise ConfigurationError(f"sign format {fmt!r} is not one of pdf, png")
    if not 72 <= dpi <= 600:
        raise ConfigurationError(f"dpi {dpi} outside [72, 600]")
    texts = _sign_texts(manifest, config, site_id)
    font_path = _japanese_font()

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties
    from matplotlib.patches import Circle, FancyBboxPatch, Polygon, Rectangle

    font = FontProperties(fname=str(font_path))
    width_mm, height_mm = 210.0, 297.0
    fig = Figure(figsize=A4_INCHES, dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, width_mm)
    ax.set_ylim(0, height_mm)
    ax.set_axis_off()
    navy, amber = "#1f3a5f", "#f5b700"

    def text(x: float, y: float, s: str, size: float, **kw: Any) -> None:
        ax.text(x, y, s, fontproperties=font, fontsize=size, **kw)

    # top band: pictogram and the statement that a face-recognition camera is in operation
    ax.add_patch(Rectangle((0, 222), width_mm, 75, color=navy))
    ax.add_patch(Rectangle((0, 217), width_mm, 5, color=amber))
    ax.add_patch(FancyBboxPatch((20, 248), 34, 20, boxstyle="round,pad=1.5", color="white"))
    ax.add_patch(Polygon([(54, 252), (66, 246), (66, 270), (54, 264)], closed=True, color="white"))
    ax.add_patch(Circle((37, 258), 6.5, color=navy))
    ax.add_patch(Circle((37, 258), 3.5, color="white"))
    text(125, 272, "顔識別機能付き", 30, color="white", ha="center", va="center")
    text(125, 254, "防犯カメラ作動中", 34, color="white", ha="center", va="center")
    text(
        width_mm / 2,
        233,
        "Face-recognition camera in operation",
        20,
        color=amber,
        ha="center",
        va="center",
    )

    # who acquires the images, why, and whom to ask
    y = 205.0
    text(15, y, "取得する事業者 / Operator", 11, color=navy)
    text(15, y - 8, texts.operator.ja, 15)
    text(15, y - 15, texts.operator.en, 11)
    y -= 27
    text(15, y, "利用目的 / Purposes", 11, color=navy)
    y -= 7
    for line_ja, line_en in texts.purposes:
        text(15, y, f"・{line_ja}", 11)
        text(19, y - 5, line_en, 8.5, color="#333")
        y -= 12
    text(
        15,
        y,
        "カメラ画像から顔識別データを抽出して照合します。一致しなかった方のデータは保存しません。",
        9.5,
    )
    text(
        15,
        y - 5,
        "Faces are compared with registered data; data of people who do not match is not kept.",
        8.5,
        color="#333",
    )
    y -= 15
    text(15, y, "共同利用 / Joint use", 11, color=navy)
    text(15, y - 7, f"管理責任者: {texts.administrator.ja}", 10)
    text(15, y - 12, f"Administrator: {texts.administrator.en}", 8.5, color="#333")
    y -= 22
    text(15, y, "お問い合わせ・開示等の請求・苦情 / Contact, requests and complaints", 11, color=navy)
    text(15, y - 7, texts.contact.ja, 10)
    text(15, y - 12, texts.contact.en, 8.5, color="#333")

    # the QR code to the full notice, as vector squares with a 4-module quiet zone
    matrix = _qr(url).matrix
    modules = len(matrix)
    size_mm = 62.0
    cell = size_mm / (modules + 8)
    x0, y0 = width_mm - 15 - size_mm, 12.0
    ax.add_patch(Rectangle((x0, y0), size_mm, size_mm, color="white", zorder=1))
    for r, row in enumerate(matrix):
        for c, dark in enumerate(row):
            if dark:
                ax.add_patch(
                    Rectangle(
                        (x0 + (c + 4) * cell, y0 + size_mm - (r + 5) * cell),
                        cell,
                        cell,
                        facecolor="black",
                        edgecolor="none",
                        linewidth=0,
                        antialiased=False,
                        zorder=2,
                    )
                )
    text(15, 62, "詳しくはこちら（QRコード）", 14, color=navy)
    text(15, 55, "Full notice (scan the QR code):", 10, color=navy)
    text(15, 48, url, min(9.0, 9.0 * 52 / max(len(url), 1)))
    text(15, 16, "個人情報保護法に基づく表示 / Notice under the APPI", 8, color="#555")

    out = io.BytesIO()
    if fmt == "pdf":
        with matplotlib.rc_context({"pdf.fonttype": 42}):
            fig.savefig(
                out,
                format="pdf",
                metadata={"Title": "顔識別機能付き防犯カメラ作動中 / Face-recognition camera in operation"},
            )
    else:
        fig.savefig(out, format="png", dpi=dpi)
    return out.getvalue()
