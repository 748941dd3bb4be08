"""The public notice (公表事項) rendered from the trusted manifest and, for a node, its settings.

APPI Art. 27-5-3 requires the group to make five things known before joint use: that joint use
happens, the items, the joint users, the purposes, and the accountable administrator's name,
address and representative. Art. 21 and the PPC Q&A (Q1-11, Q1-12) add, for a store that runs
face-recognition cameras: who acquires the images, what is acquired, purposes stated so that a
person can foresee that face-recognition technology is used, and a contact point, shown at the
site or through a URL or QR code.

``build_notice`` turns the signed manifest the nodes enforce (plus, for one node, its operator,
sites and written retention) into one structured ``NoticeDocument``; the plain text below, the
HTML page and the signage in ``node/`` all render that one document, so what the public reads is
what the network does. Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from governance.manifest import LocalizedText, Manifest, MemberStatus
from protocol.fields import format_time

__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "LocalNotice",
    "NoticeDates",
    "NoticeDocument",
    "Operator",
    "Section",
    "SiteSignage",
    "build_notice",
    "choose_language",
    "current_members",
    "negotiate_language",
    "render_notice",
    "render_text",
]

LANGUAGES = ("ja", "en")
DEFAULT_LANGUAGE = "ja"
"""The notice is for people in Japanese stores: Japanese unless the reader asks for English."""
INSIGHTFACE_PACKS = ("buffalo_",)
"""Model ids of InsightFace's pretrained packs, whose licence the notice must state."""

JOINT_USE_SECTIONS = (
    "joint-use-fact",
    "joint-use-items",
    "joint-use-members",
    "joint-use-purposes",
    "joint-use-administrator",
)
"""Ids of the five Art. 27-5-3 items, in the law's order (stable: the HTML uses them as anchors)."""

_T = {
    "ja": {
        "group_title": "共同利用に関する公表事項（個人情報保護法第27条第5項第3号）",
        "group_lead": "参加事業者の店舗では、顔識別機能付き防犯カメラにより、カメラ画像及び顔識別データを取得しています。",
        "node_title": "顔識別機能付き防犯カメラの利用に関するお知らせ",
        "node_lead": "{operator}の店舗では、顔識別機能付き防犯カメラが作動しています。カメラ画像及び顔識別データの取扱いは次のとおりです。",
        "operator": "カメラ画像を取得する事業者",
        "name": "名称",
        "address": "住所",
        "representative": "代表者",
        "contact_field": "お問い合わせ窓口",
        "acquired": "取得する情報",
        "acquired_images": "防犯カメラで撮影したカメラ画像（顔画像を含みます）",
        "acquired_faces": "カメラ画像から顔識別技術により抽出した顔識別データ（顔の特徴量）",
        "model": "顔識別モデル: {model}",
        "model_licence": "（InsightFace の学習済みモデルは非商用の研究目的に限り利用が許諾されています。商用運用では利用許諾を得たモデルに置き換えます。）",
        "purposes": "利用目的",
        "purposes_lead": "カメラ画像から顔識別技術を用いて顔識別データを抽出し、共同利用者が登録した顔識別データと自動的に照合します。カメラ画像及び顔識別データは、次の目的に限って利用します。",
        "purposes_limits": "登録された顔識別データと一致しなかった方の顔識別データは保存せず、照合後直ちに破棄します。マーケティング等、上記以外の目的には利用しません。",
        "signage": "「顔識別機能付き防犯カメラ作動中」の掲示",
        "signage_lead": "店舗ごとの掲示の状況です。",
        "signage_none": "この事業者の設定には、掲示場所がまだ登録されていません。",
        "site_posted": "{site}: 掲示済み（{date}から）",
        "site_not_posted": "{site}: 掲示準備中",
        "site_cameras": "（カメラ: {cameras}）",
        "joint_use": "共同利用について（個人情報保護法第27条第5項第3号）",
        "joint-use-fact": "1. 共同利用をする旨",
        "joint-use-items": "2. 共同して利用される個人データの項目",
        "joint-use-members": "3. 共同して利用する者の範囲",
        "joint-use-purposes": "4. 利用する者の利用目的",
        "joint-use-administrator": "5. 当該個人データの管理について責任を有する者",
        "not_participating": "この事業者は現在、共同利用に参加していません（マニフェスト上の状態: {status}）。",
        "retention": "保存期間",
        "retention_group": "登録された顔識別データ等: 登録日から最長{days}日（期間満了時に全参加者から自動的に削除されます）",
        "retention_node": "登録された顔識別データ等: 登録日から最長{days}日（共同利用グループの上限は{max}日。期間満了時に全参加者から自動的に削除されます）",
        "retention_unmatched": "登録と一致しなかった方の顔識別データ: 保存しません（照合後直ちに破棄します）",
        "retention_recording": "カメラ画像（録画）: 最長{days}日",
        "requests": "開示等の請求・苦情の申出",
        "requests_lead": "ご本人は、保有個人データの利用目的の通知、開示、訂正・追加・削除、利用停止・消去及び第三者提供の停止を請求し、また苦情を申し出ることができます。次の窓口にご連絡ください。ご本人であることを確認のうえ対応します。",
        "requests_operator": "{name}の窓口",
        "requests_admin": "共同利用の管理責任者（{name}）の窓口",
        "requests_how": "請求の方法（開示・訂正・削除・利用停止）",
        "requests_kinds": "請求できること: 開示（登録されているかどうかを含みます）、内容の訂正・追加・削除、利用停止・消去、第三者提供の停止",
        "requests_where": "請求先: 下記の窓口に、書面・電子メール又は来店によりお申し出ください。請求の書式は窓口でお渡しします。",
        "requests_identity": "ご本人確認のためにお持ちいただくもの: {identity}",
        "requests_identity_default": "運転免許証、マイナンバーカード（表面）、旅券など顔写真付きの本人確認書類1点。開示の請求では、照合のためご本人の顔写真をお預かりし、照合後に破棄します。代理人による請求では委任状と代理人の本人確認書類も必要です。",
        "requests_deadline": "回答までの期間: 請求を受け付けた日から{days}日以内に書面又は電子メールで回答します。法令により開示等をしないことができる場合は、その旨と理由をお知らせします。",
        "version": "本公表事項は共同利用管理規程（マニフェスト）第{version}版に基づき自動生成されています（有効期限 {expires}）。",
        "version_node": "本お知らせは共同利用管理規程（マニフェスト）第{version}版（有効期限 {expires}）及び本事業者の設定に基づき自動生成されています。",
    },
    "en": {
        "group_title": "Notice of joint use (APPI Article 27(5)(iii))",
        "group_lead": "Face-recognition security cameras are in operation in the member businesses' stores: camera images and face-recognition data are acquired.",
        "node_title": "Notice: face-recognition security cameras in operation",
        "node_lead": "Face-recognition security cameras are in operation in the stores of {operator}. Camera images and face-recognition data are handled as follows.",
        "operator": "Business operator acquiring the images",
        "name": "Name",
        "address": "Address",
        "representative": "Representative",
        "contact_field": "Contact",
        "acquired": "What is acquired",
        "acquired_images": "Camera images taken by the security cameras (including images of faces)",
        "acquired_faces": "Face-recognition data (facial feature values) extracted from the camera images with face-recognition technology",
        "model": "Face-recognition model: {model}",
        "model_licence": "(InsightFace's pretrained weights are licensed for non-commercial research only; a commercial deployment replaces them with a licensed model.)",
        "purposes": "Purposes of use",
        "purposes_lead": "Face-recognition technology extracts face-recognition data from the camera images and compares it automatically with face-recognition data registered by the joint users. Camera images and face-recognition data are used only for the following purposes:",
        "purposes_limits": "Face-recognition data of people who do not match a registered entry is not stored: it is discarded immediately after the comparison. The data is not used for any other purpose, such as marketing.",
        "signage": "'Face-recognition camera in operation' signage",
        "signage_lead": "Signage at each site:",
        "signage_none": "No sites are recorded in this business's settings yet.",
        "site_posted": "{site}: posted (since {date})",
        "site_not_posted": "{site}: not yet posted",
        "site_cameras": " (cameras: {cameras})",
        "joint_use": "Joint use (APPI Article 27(5)(iii))",
        "joint-use-fact": "1. Fact of joint use",
        "joint-use-items": "2. Personal data items used jointly",
        "joint-use-members": "3. Scope of joint users",
        "joint-use-purposes": "4. Purposes of use",
        "joint-use-administrator": "5. Party responsible for managing the personal data",
        "not_participating": "This business does not currently take part in the joint use (status in the manifest: {status}).",
        "retention": "Retention",
        "retention_group": "Registered face-recognition data and its details: at most {days} days from registration; on expiry the data is deleted automatically at every member.",
        "retention_node": "Registered face-recognition data and its details: at most {days} days from registration (the group's limit is {max} days); on expiry the data is deleted automatically at every member.",
        "retention_unmatched": "Face-recognition data of people who match no entry: not stored (discarded immediately after the comparison).",
        "retention_recording": "Camera images (recordings): at most {days} days",
        "requests": "Requests and complaints",
        "requests_lead": "You may ask for notification of the purposes, disclosure, correction, addition or deletion, cessation of use or erasure, and cessation of third-party provision of your retained personal data, and you may make a complaint. Please contact the following; your identity is confirmed before we respond.",
        "requests_operator": "{name}",
        "requests_admin": "Administrator of the joint use ({name})",
        "requests_how": "How to make a request (disclosure, correction, deletion, stop of use)",
        "requests_kinds": "What you may ask for: disclosure (including whether you are registered at all), correction, addition or deletion of the content, cessation of use or erasure, and cessation of provision to third parties.",
        "requests_where": "Where: at the contact points below, in writing, by e-mail or in person; the request form is available there.",
        "requests_identity": "What to bring to prove your identity: {identity}",
        "requests_identity_default": "one identity document with your photograph, such as a driving licence, a My Number card (front side) or a passport. For a disclosure request a photograph of your face is taken for the search and destroyed afterwards. A representative also brings a letter of authority and their own identity document.",
        "requests_deadline": "How long it takes: we answer in writing or by e-mail within {days} days of receiving the request; where the law allows us not to disclose or act, we tell you so and why.",
        "version": "This notice is generated from version {version} of the group manifest (valid until {expires}).",
        "version_node": "This notice is generated from version {version} of the group manifest (valid until {expires}) and this business's settings.",
    },
}


@dataclass(frozen=True)
class Operator:
    """The business operator that acquires the camera images (the node's own business)."""

    name: LocalizedText
    contact: LocalizedText
    address: LocalizedText | None = None
    representative: LocalizedText | None = None


@dataclass(frozen=True)
class SiteSignage:
    """A store (site) with cameras, and since when its 'camera in operation' sign is posted."""

    site_id: str
    name: LocalizedText
    cameras: tuple[str, ...] = ()
    posted_on: date | None = None
    """``None``: not posted yet (the notice says so rather than pretending)."""


@dataclass(frozen=True)
class LocalNotice:
    """What one node adds to the group's notice: its operator, sites and written retention."""

    node_id: str
    operator: Operator
    sites: tuple[SiteSignage, ...] = ()
    retention_days: int | None = None
    """The node's written rules (may only be shorter than the group's maximum)."""
    recording_retention_days: int | None = None
    """How long the store keeps camera recordings, if it states it."""
    request_identity: LocalizedText | None = None
    """What a data subject brings to prove who they are (default: a photo identity document)."""
    request_response_days: int = 14
    """Within how many days a data-subject request is answered (``[notice] request_response_days``)."""


@dataclass(frozen=True)
class Section:
    """A heading, then paragraphs, a bullet list, labelled fields, notes and subsections, in that order."""

    id: str
    heading: str
    paragraphs: tuple[str, ...] = ()
    bullets: tuple[str, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()
    subsections: tuple[Section, ...] = ()

    def find(self, section_id: str) -> Section | None:
        if self.id == section_id:
            return self
        return next((s for sub in self.subsections if (s := sub.find(section_id)) is not None), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "heading": self.heading,
            "paragraphs": list(self.paragraphs),
            "bullets": list(self.bullets),
            "fields": [{"label": label, "value": value} for label, value in self.fields],
            "notes": list(self.notes),
            "subsections": [s.to_dict() for s in self.subsections],
        }


@dataclass(frozen=True)
class NoticeDocument:
    """The notice in one language, ready for any renderer (text, HTML, signage)."""

    lang: str
    title: str
    lead: tuple[str, ...]
    sections: tuple[Section, ...]
    footer: tuple[str, ...]
    manifest_version: int
    group_id: str
    node_id: str | None = None

    def section(self, section_id: str) -> Section | None:
        return next((s for top in self.sections if (s := top.find(section_id)) is not None), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lang": self.lang,
            "title": self.title,
            "lead": list(self.lead),
            "sections": [s.to_dict() for s in self.sections],
            "footer": list(self.footer),
            "manifest_version": self.manifest_version,
            "group_id": self.group_id,
            "node_id": self.node_id,
        }


def _check_lang(lang: str) -> None:
    if lang not in LANGUAGES:
        raise ValueError(f"language {lang!r} is not one of {LANGUAGES}")


def current_members(manifest: Manifest) -> tuple[tuple[str, LocalizedText], ...]:
    """The joint users the notice names: active members only.

    A suspended or removed member neither receives data nor is answered (the peer gate refuses
    it), so it is not a current joint user; the notice changes with the manifest version.
    """
    return tuple((m.node_id, m.name) for m in manifest.joint_use.members if m.status is MemberStatus.ACTIVE)


def _joint_use(manifest: Manifest, lang: str, h: dict[str, str], local: LocalNotice | None) -> Section:
    joint = manifest.joint_use
    admin = joint.administrator
    fact = [joint.statement.get(lang)]
    if local is not None:
        me = manifest.member(local.node_id)
        if me is None or me.status is not MemberStatus.ACTIVE:
            status = "not listed" if me is None else me.status.value
            fact.append(h["not_participating"].format(status=status))
    subsections = (
        Section("joint-use-fact", h["joint-use-fact"], paragraphs=tuple(fact)),
        Section(
            "joint-use-items", h["joint-use-items"], bullets=tuple(i.text.get(lang) for i in joint.items)
        ),
        Section(
            "joint-use-members",
            h["joint-use-members"],
            bullets=tuple(f"{name.get(lang)} ({node_id})" for node_id, name in current_members(manifest)),
        ),
        Section(
            "joint-use-purposes",
            h["joint-use-purposes"],
            bullets=tuple(p.text.get(lang) for p in joint.purposes),
        ),
        Section(
            "joint-use-administrator",
            h["joint-use-administrator"],
            fields=(
                (h["name"], admin.name.get(lang)),
                (h["address"], admin.address.get(lang)),
                (h["representative"], admin.representative.get(lang)),
            ),
        ),
    )
    return Section("joint-use", h["joint_use"], subsections=subsections)


def _site_line(site: SiteSignage, lang: str, h: dict[str, str], dates: NoticeDates) -> str:
    label = f"{site.name.get(lang)} ({site.site_id})"
    if site.posted_on is None:
        line = h["site_not_posted"].format(site=label)
    else:
        line = h["site_posted"].format(site=label, date=dates.day(site.posted_on))
    if site.cameras:
        line += h["site_cameras"].format(cameras=", ".join(site.cameras))
    return line


@dataclass(frozen=True)
class NoticeDates:
    """How the notice writes a day and a moment; the node passes its zone's local forms
    (``node.local_time``), the default is the wire's (ISO 8601 and UTC)."""

    day: Callable[[date], str] = date.isoformat
    moment: Callable[[datetime], str] = format_time


def build_notice(
    manifest: Manifest,
    lang: str = DEFAULT_LANGUAGE,
    local: LocalNotice | None = None,
    dates: NoticeDates = NoticeDates(),
) -> NoticeDocument:
    """The notice in ``lang``: the group's (``local`` is None) or one node's (with its operator and sites)."""
    _check_lang(lang)
    h = _T[lang]
    joint = manifest.joint_use
    admin = joint.administrator
    policy = manifest.policy
    model = [h["model"].format(model=policy.model.model_id)]
    if policy.model.model_id.startswith(INSIGHTFACE_PACKS):
        model.append(h["model_licence"])
    sections: list[Section] = []
    if local is None:
        title, lead = h["group_title"], (h["group_lead"],)
    else:
        op = local.operator
        title, lead = h["node_title"], (h["node_lead"].format(operator=op.name.get(lang)).replace("..", "."),)
        operator_fields = [(h["name"], op.name.get(lang))]
        if op.address is not None:
            operator_fields.append((h["address"], op.address.get(lang)))
        if op.representative is not None:
            operator_fields.append((h["representative"], op.representative.get(lang)))
        operator_fields.append((h["contact_field"], op.contact.get(lang)))
        sections.append(Section("operator", h["operator"], fields=tuple(operator_fields)))
    sections.append(
        Section(
            "acquired",
            h["acquired"],
            bullets=(h["acquired_images"], h["acquired_faces"]),
            notes=tuple(model),
        )
    )
    sections.append(
        Section(
            "purposes",
            h["purposes"],
            paragraphs=(h["purposes_lead"],),
            bullets=tuple(p.text.get(lang) for p in joint.purposes),
            notes=(h["purposes_limits"],),
        )
    )
    if local is not None:
        sites = local.sites
        sections.append(
            Section(
                "signage",
                h["signage"],
                paragraphs=(h["signage_lead"] if sites else h["signage_none"],),
                bullets=tuple(_site_line(s, lang, h, dates) for s in sites),
            )
        )
    sections.append(_joint_use(manifest, lang, h, local))
    retention = []
    if local is not None and local.retention_days is not None:
        retention.append(h["retention_node"].format(days=local.retention_days, max=policy.max_retention_days))
    else:
        retention.append(h["retention_group"].format(days=policy.max_retention_days))
    retention.append(h["retention_unmatched"])
    if local is not None and local.recording_retention_days is not None:
        retention.append(h["retention_recording"].format(days=local.recording_retention_days))
    sections.append(Section("retention", h["retention"], bullets=tuple(retention)))
    contacts = []
    if local is not None:
        contacts.append(
            (
                h["requests_operator"].format(name=local.operator.name.get(lang)),
                local.operator.contact.get(lang),
            )
        )
    contacts.append((h["requests_admin"].format(name=admin.name.get(lang)), admin.contact.get(lang)))
    sections.append(
        Section(
            "requests",
            h["requests"],
            paragraphs=(h["requests_lead"],),
            fields=tuple(contacts),
            subsections=(_request_how(lang, h, local),),
        )
    )
    version = h["version" if local is None else "version_node"].format(
        version=manifest.version, expires=dates.moment(manifest.expires)
    )
    return NoticeDocument(
        lang=lang,
        title=title,
        lead=lead,
        sections=tuple(sections),
        footer=(version,),
        manifest_version=manifest.version,
        group_id=manifest.group_id,
        node_id=None if local is None else local.node_id,
    )


def _request_how(lang: str, h: dict[str, str], local: LocalNotice | None) -> Section:
    """How a data subject asks for disclosure, correction, deletion or stop of use (APPI Art. 32-35):
    what, where, what proof of identity to bring, and within how many days the answer comes."""
    identity = local.request_identity.get(lang) if local is not None and local.request_identity else None
    days = local.request_response_days if local is not None else LocalNotice.request_response_days
    return Section(
        "requests-how",
        h["requests_how"],
        bullets=(
            h["requests_kinds"],
            h["requests_where"],
            h["requests_identity"].format(identity=identity or h["requests_identity_default"]),
            h["requests_deadline"].format(days=days),
        ),
    )


def _text_section(section: Section, out: list[str]) -> None:
    out += [section.heading]
    out += [f"  {p}" for p in section.paragraphs]
    out += [f"  - {b}" for b in section.bullets]
    out += [f"  {label}: {value}" for label, value in section.fields]
    out += [f"  {n}" for n in section.notes]
    out.append("")
    for sub in section.subsections:
        _text_section(sub, out)


def render_text(document: NoticeDocument) -> str:
    """Plain text of a notice document (for terminals, e-mail and ``watchnet gov notice``)."""
    out = [document.title, ""]
    for paragraph in document.lead:
        out += [paragraph, ""]
    for section in document.sections:
        _text_section(section, out)
    out += list(document.footer)
    return "\n".join(out) + "\n"


def render_notice(
    manifest: Manifest, lang: str = DEFAULT_LANGUAGE, dates: NoticeDates = NoticeDates()
) -> str:
    """Plain text of the group's notice in ``lang`` (``ja`` or ``en``)."""
    return render_text(build_notice(manifest, lang, dates=dates))


_ACCEPT_RE = re.compile(r"^\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([0-9.]{1,5}))?\s*$")
MAX_ACCEPT_LANGUAGE = 1024
"""Longer headers are ignored rather than parsed (a public page must stay cheap)."""


def negotiate_language(accept_language: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """The supported language the reader prefers (RFC 9110 ``Accept-Language``), else ``default``.

    Only the primary subtag counts (``en-GB`` is English); among equal weights the first listed
    wins; ``q=0`` means "not this one", so a reader who refuses the default and names nothing we
    have gets the other language; ``*`` and unparsable parts change nothing.
    """
    if not accept_language or len(accept_language) > MAX_ACCEPT_LANGUAGE:
        return default
    best: tuple[float, int, str] | None = None
    refused: set[str] = set()
    for position, part in enumerate(accept_language.split(",")[:32]):
        m = _ACCEPT_RE.match(part)
        if m is None or m.group(1) == "*":
            continue
        try:
            q = 1.0 if m.group(2) is None else float(m.group(2))
        except ValueError:
            continue
        primary = m.group(1).lower().split("-")[0]
        if primary not in LANGUAGES or not 0.0 <= q <= 1.0:
            continue
        if q == 0:
            refused.add(primary)
        elif best is None or q > best[0]:
            best = (q, position, primary)
    if best is not None and best[2] not in refused:
        return best[2]
    if default in refused:
        return next((lang for lang in LANGUAGES if lang not in refused), default)
    return default


def choose_language(query: str | None, accept_language: str | None) -> str:
    """``?lang=`` wins when given (and must be supported); else the ``Accept-Language`` choice."""
    if query is not None:
        _check_lang(query)
        return query
    return negotiate_language(accept_language)
