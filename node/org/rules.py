"""The group's rules as the readable guideline the organisation publishes, made from the manifest.

A certified organisation publishes its guideline (個人情報保護指針): what may be registered and
on what evidence, for which purposes, which items are shared, how long anything is kept, how a
person's request or complaint is answered. In this group every one of those rules is a field of
the signed manifest that every node enforces, so the page is generated from the manifest in
force (``GET /rules``, ``/rules.txt`` on ``gov serve``, Japanese or English) and cannot say
anything the nodes do not do. It is a ``NoticeDocument`` like the notice, rendered by the same
HTML and text renderers (``node.reporting.notice_pages``, ``governance.notice``).
"""

from __future__ import annotations

from governance.manifest import Manifest, MemberStatus
from governance.notice import NoticeDocument, Section
from node.console.i18n import LABELS
from protocol.fields import format_time

__all__ = ["RULES_PATH", "build_rules"]

RULES_PATH = "/rules"

_T = {
    "ja": {
        "title": "個人情報保護指針（共同利用のルール）",
        "lead": (
            "この指針は、{group}（マニフェスト第 {version} 版、{expires} まで有効）の内容から自動で作成しています。"
            "参加事業者の各ノードは、同じマニフェストに従って動作します。"
        ),
        "purposes": "1. 利用目的",
        "purposes_lead": "カメラ画像及び顔識別データは、次の目的に限って利用します。これ以外の目的の照会は各ノードが拒否し、記録します。",
        "items": "2. 共同利用する項目",
        "registration": "3. 登録の基準",
        "registration_lead": "次の事案の種別に限り、次のいずれかの客観的な証跡がある場合にだけ登録します。犯罪の手続に関する事実（逮捕、起訴、判決等）は登録しません。",
        "categories": "登録できる事案の種別",
        "evidence": "必要な証跡",
        "two_person": "登録担当者が申請し、別のアカウントの責任者が必要性と正確性を確認して承認したときにだけ有効になります（二者確認）。",
        "model": "顔識別モデル {model}（{dimension} 次元）、照合のしきい値 {threshold}",
        "retention": "4. 保存期間",
        "retention_lead": "登録は承認から最長 {days} 日で、全ての参加事業者のノードから自動的に削除されます。訂正と削除は署名付きで全員に伝わり、各事業者は受領証を返します。",
        "queries": "5. 照会の方式",
        "mode_plain": "通常照会: 照会の顔識別データは暗号化して送られ、一致しなければ照会先に保存されません。",
        "mode_private": "秘匿照会: 照会先は暗号化したまま照合し、照会の顔識別データを見ることはありません。",
        "members": "6. 参加事業者",
        "procedures": "7. 本人からの請求と苦情への対応",
        "requests": "開示、訂正、削除、利用停止の請求は、各参加事業者または下記の管理責任者が受け付け、期限を定めて対応し、結果を記録します。法令上拒否できる場合は、その根拠を記録します。",
        "complaints": "苦情は、各参加事業者の窓口、又は当団体の公表ページ（/notice）の受付フォームで受け付けます（法第40条）。",
        "governance": "参加事業者の加盟、参加停止、脱退とこの指針の変更は、マニフェストの次の版として作成し、当団体の鍵管理者 {n} 名のうち {k} 名が署名したときにだけ効力を持ちます。",
        "administrator": "8. 管理責任者",
        "name": "名称",
        "address": "住所",
        "representative": "代表者",
        "contact": "お問い合わせ窓口",
        "footer": "マニフェスト第 {version} 版（グループ {group}）から作成。",
    },
    "en": {
        "title": "Guideline for the protection of personal information (the joint-use rules)",
        "lead": (
            "This guideline is generated from {group}'s manifest (version {version}, valid until {expires}). "
            "Every member's node runs by the same manifest."
        ),
        "purposes": "1. Purposes of use",
        "purposes_lead": "Camera images and face-recognition data are used only for these purposes; every node refuses, and records, a query for any other.",
        "items": "2. Jointly used items",
        "registration": "3. What may be registered",
        "registration_lead": "Only incidents of these categories, and only with one of these kinds of objective evidence. No facts of criminal procedure (arrest, prosecution, conviction) are ever registered.",
        "categories": "Incident categories",
        "evidence": "Evidence required",
        "two_person": "A registrar proposes; an entry becomes active only once an officer of another account confirms it is necessary and accurate (the two-person rule).",
        "model": "Face model {model} ({dimension} dimensions), match threshold {threshold}",
        "retention": "4. Retention",
        "retention_lead": "An entry is deleted automatically from every member's node at most {days} days after approval. Corrections and deletions reach every member signed, and each returns a receipt.",
        "queries": "5. How members ask each other",
        "mode_plain": "Plain: the query's face data travels encrypted and is not kept by a peer it does not match.",
        "mode_private": "Private: the peer matches while everything stays encrypted and never sees the query's face data.",
        "members": "6. Members",
        "procedures": "7. Requests and complaints",
        "requests": "Requests for disclosure, correction, deletion or cease of use are taken by every member and by the accountable administrator below, answered within a deadline and recorded; a refusal the law allows is recorded with its ground.",
        "complaints": "Complaints are taken by every member's contact point and on the organisation's notice page (/notice), under APPI Art. 40.",
        "governance": "Admitting, suspending or removing a member, and any change of this guideline, is a new version of the manifest, in force only once {k} of the organisation's {n} key holders have signed it.",
        "administrator": "8. Accountable administrator",
        "name": "Name",
        "address": "Address",
        "representative": "Representative",
        "contact": "Contact",
        "footer": "Generated from manifest version {version} (group {group}).",
    },
}


def _label(kind: str, code: str, lang: str) -> str:
    pair = LABELS[kind].get(code)
    return f"{pair[0 if lang == 'ja' else 1]} ({code})" if pair else code


def build_rules(manifest: Manifest, lang: str) -> NoticeDocument:
    """The guideline in ``lang`` (``ja`` or ``en``), from ``manifest`` alone."""
    h = _T[lang]
    policy = manifest.policy
    admin = manifest.joint_use.administrator
    role = manifest.manifest_role
    modes = {"plain": h["mode_plain"], "private": h["mode_private"]}
    sep = "、" if lang == "ja" else ", "
    sections = (
        Section(
            "purposes",
            h["purposes"],
            paragraphs=(h["purposes_lead"],),
            bullets=tuple(f"{p.text.get(lang)} ({p.code})" for p in manifest.joint_use.purposes),
        ),
        Section("items", h["items"], bullets=tuple(i.text.get(lang) for i in manifest.joint_use.items)),
        Section(
            "registration",
            h["registration"],
            paragraphs=(h["registration_lead"],),
            fields=(
                (h["categories"], sep.join(_label("category", c, lang) for c in policy.incident_categories)),
                (h["evidence"], sep.join(_label("evidence", e, lang) for e in policy.required_evidence)),
            ),
            notes=(
                h["two_person"],
                h["model"].format(
                    model=policy.model.model_id,
                    dimension=policy.model.dimension,
                    threshold=policy.match_threshold,
                ),
            ),
        ),
        Section(
            "retention",
            h["retention"],
            paragraphs=(h["retention_lead"].format(days=policy.max_retention_days),),
        ),
        Section("queries", h["queries"], bullets=tuple(modes.get(m, m) for m in policy.query_modes.allowed)),
        Section(
            "members",
            h["members"],
            bullets=tuple(
                f"{m.name.get(lang)} ({m.node_id})"
                for m in manifest.joint_use.members
                if m.status is MemberStatus.ACTIVE
            ),
        ),
        Section(
            "procedures",
            h["procedures"],
            paragraphs=(
                h["requests"],
                h["complaints"],
                h["governance"].format(k=role.threshold, n=len(role.keyids)),
            ),
        ),
        Section(
            "administrator",
            h["administrator"],
            fields=(
                (h["name"], admin.name.get(lang)),
                (h["address"], admin.address.get(lang)),
                (h["representative"], admin.representative.get(lang)),
                (h["contact"], admin.contact.get(lang)),
            ),
        ),
    )
    values = {
        "group": manifest.group_id,
        "version": manifest.version,
        "expires": format_time(manifest.expires),
    }
    return NoticeDocument(
        lang=lang,
        title=h["title"],
        lead=(h["lead"].format(**values),),
        sections=sections,
        footer=(h["footer"].format(**values),),
        manifest_version=manifest.version,
        group_id=manifest.group_id,
    )
