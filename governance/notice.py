"""The joint-use notice (共同利用に関する公表事項) rendered from the trusted manifest.

APPI Art. 27-5-3 requires the group to make five things known before joint use: that joint use
happens, the items, the joint users, the purposes, and the accountable administrator's name,
address and representative. The text is generated from the signed manifest the nodes enforce,
so what the public reads is what the network does.
"""

from __future__ import annotations

from governance.manifest import Manifest, MemberStatus
from protocol.fields import format_time

__all__ = ["LANGUAGES", "render_notice"]

LANGUAGES = ("ja", "en")
INSIGHTFACE_PACKS = ("buffalo_",)
"""Model ids of InsightFace's pretrained packs, whose licence the notice must state."""

_HEADINGS = {
    "ja": {
        "title": "共同利用に関する公表事項（個人情報保護法第27条第5項第3号）",
        "fact": "1. 共同利用をする旨",
        "items": "2. 共同して利用される個人データの項目",
        "members": "3. 共同して利用する者の範囲",
        "purposes": "4. 利用する者の利用目的",
        "admin": "5. 当該個人データの管理について責任を有する者",
        "name": "名称",
        "address": "住所",
        "representative": "代表者",
        "contact": "お問い合わせ・開示等の請求・苦情の窓口",
        "retention": "保存期間",
        "retention_text": "登録日から最長{days}日（期間満了時に全参加者から自動的に削除されます）",
        "camera": "顔識別機能付き防犯カメラにより、カメラ画像及び顔識別データを取得しています。",
        "model": "顔識別モデル: {model}",
        "model_licence": "（InsightFace の学習済みモデルは非商用の研究目的に限り利用が許諾されています。商用運用では利用許諾を得たモデルに置き換えます。）",
        "version": "本公表事項は共同利用管理規程（マニフェスト）第{version}版に基づき自動生成されています（有効期限 {expires}）。",
    },
    "en": {
        "title": "Notice of joint use (APPI Article 27(5)(iii))",
        "fact": "1. Fact of joint use",
        "items": "2. Personal data items used jointly",
        "members": "3. Scope of joint users",
        "purposes": "4. Purposes of use",
        "admin": "5. Party responsible for managing the personal data",
        "name": "Name",
        "address": "Address",
        "representative": "Representative",
        "contact": "Contact for enquiries, disclosure and other requests, and complaints",
        "retention": "Retention",
        "retention_text": "At most {days} days from registration; on expiry the data is deleted automatically at every member.",
        "camera": "Face-recognition security cameras are in operation: camera images and face-recognition data are acquired.",
        "model": "Face-recognition model: {model}",
        "model_licence": "(InsightFace's pretrained weights are licensed for non-commercial research only; a commercial deployment replaces them with a licensed model.)",
        "version": "This notice is generated from version {version} of the group manifest (valid until {expires}).",
    },
}


def render_notice(manifest: Manifest, lang: str = "ja") -> str:
    """Plain text of the notice in ``lang`` (``ja`` or ``en``)."""
    if lang not in LANGUAGES:
        raise ValueError(f"language {lang!r} is not one of {LANGUAGES}")
    h = _HEADINGS[lang]
    joint = manifest.joint_use
    admin = joint.administrator
    lines = [h["title"], "", h["camera"], "", h["fact"], f"  {joint.statement.get(lang)}", "", h["items"]]
    lines += [f"  - {item.text.get(lang)}" for item in joint.items]
    lines += ["", h["members"]]
    lines += [
        f"  - {m.name.get(lang)} ({m.node_id})" for m in joint.members if m.status is MemberStatus.ACTIVE
    ]
    lines += ["", h["purposes"]]
    lines += [f"  - {p.text.get(lang)}" for p in joint.purposes]
    lines += [
        "",
        h["admin"],
        f"  {h['name']}: {admin.name.get(lang)}",
        f"  {h['address']}: {admin.address.get(lang)}",
        f"  {h['representative']}: {admin.representative.get(lang)}",
        "",
        h["retention"],
        "  " + h["retention_text"].format(days=manifest.policy.max_retention_days),
        "",
        h["contact"],
        f"  {admin.contact.get(lang)}",
        "",
        h["model"].format(model=manifest.policy.model.model_id),
        *([h["model_licence"]] if manifest.policy.model.model_id.startswith(INSIGHTFACE_PACKS) else []),
        h["version"].format(version=manifest.version, expires=format_time(manifest.expires)),
    ]
    return "\n".join(lines) + "\n"
