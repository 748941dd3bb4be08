"""What each code a person sees is called, in Japanese and in English.

Codes (categories, reasons, roles, error codes, request kinds, legal grounds ...) are what the
node stores and sends; people read their names. The console and the transparency report both
name them, so the names live here, below both.
"""

from __future__ import annotations

__all__ = ["LABELS", "label_anywhere"]

LABELS: dict[str, dict[str, tuple[str, str]]] = {
    "category": {
        "shoplifting": ("万引き", "Shoplifting"),
        "theft": ("窃盗", "Theft"),
        "nuisance": ("迷惑行為", "Nuisance"),
    },
    "camera_state": {
        "up": ("受信中", "up"),
        "connecting": ("接続中", "connecting"),
        "reconnecting": ("再接続中", "reconnecting"),
        "no_frames": ("映像が届いていません", "no frames"),
        "ended": ("終了（ファイル）", "ended (file)"),
        "stopped": ("停止", "stopped"),
        "unknown": ("不明（報告なし）", "unknown (no report)"),
    },
    "purpose": {  # the demo group's purposes; a group's own codes show as themselves
        "crime-prevention": ("犯罪の防止", "Crime prevention"),
        "data-subject-request": ("本人からの請求への対応", "Data subject's requests"),
    },
    "evidence": {
        "police-report": ("被害届", "Police report"),
        "incident-record": ("事案記録", "Incident record"),
    },
    "status": {
        "proposed": ("承認待ち", "Waiting for approval"),
        "active": ("登録中", "Active"),
        "rejected": ("却下", "Rejected"),
        "deleted": ("削除済み", "Deleted"),
        "expired": ("期限切れ削除", "Expired"),
    },
    "reason": {
        "correction": ("内容の訂正", "Correction"),
        "data-subject-request": ("本人からの請求", "Data subject's request"),
        "error": ("誤登録", "Registered in error"),
        "no-longer-necessary": ("不要になった", "No longer necessary"),
        "retention-expired": ("保存期間の満了", "Retention expired"),
        "registration": ("新規登録", "Registration"),  # auditor, requests and complaints pages
        "insufficient-evidence": ("証跡が不十分", "Insufficient evidence"),
        "not-necessary": ("登録の必要性がない", "Registration not necessary"),
        "poor-image": ("顔画像が不適切", "Unsuitable face image"),
        "duplicate": ("重複した申請", "Duplicate proposal"),
    },
    "role": {
        "registrar": ("登録担当", "registrar"),
        "officer": ("責任者", "officer"),
        "operator": ("運用担当", "operator"),
        "auditor": ("監査担当", "auditor"),
        "admin": ("管理者", "admin"),
        "camera": ("カメラ", "camera"),
        "secretariat": ("事務局", "secretariat"),
        "key-holder": ("鍵管理者", "key holder"),
    },
    "draft_action": {
        "admit": ("加盟", "Admission"),
        "suspend": ("参加停止", "Suspension"),
        "reinstate": ("参加再開", "Reinstatement"),
        "remove": ("脱退", "Removal"),
        "renew": ("有効期限の更新", "Renewal"),
    },
    "fork_decision": {
        "dismissed": ("問題なしとして終了", "Dismissed"),
        "explain": ("事業者に説明を求める", "Member asked to explain"),
        "suspension-drafted": ("参加停止案を作成", "Suspension drafted"),
    },
    "draft_state": {
        "open": ("署名待ち", "Collecting signatures"),
        "published": ("公開済み", "Published"),
        "withdrawn": ("取下げ", "Withdrawn"),
    },
    "error": {
        "draft_open": ("未完了の改訂案があります", "Another draft is open"),
        "draft_stale": ("改訂案の元の版が古くなっています", "The draft was made on an older version"),
        "no_draft": ("該当する改訂案がありません", "No such draft"),
        "no_report": ("この期間のレポートは公開されていません", "That period's report is not published"),
        "signature_mismatch": (
            "署名ファイルの内容が改訂案と一致しません",
            "The signed file is not this draft",
        ),
        "node_unreachable": (
            "カメラワーカーからノードに接続できません",
            "The camera worker cannot reach the node",
        ),
        "not_found": ("該当するページがありません", "No such page"),
        "unauthenticated": ("ログインが必要です", "Sign-in required"),
        "session_expired": ("セッションの有効期限が切れました", "The session expired"),
        "forbidden": ("あなたの役割ではこの操作はできません", "Your role may not do this"),
        "csrf": (
            "フォームを確認できませんでした（有効期限切れ、またはこの画面以外から送信されました）",
            "The form could not be verified (it expired, or was not sent from this console)",
        ),
        "two_person_rule": (
            "二者確認ルール: 申請した本人は承認・訂正できません。別の責任者が行ってください",
            "Two-person rule: whoever proposed an entry cannot approve or correct it; another officer must",
        ),
        "registration_refused": ("登録規則を満たしていません", "The registration rules are not met"),
        "face_quality": (
            "顔画像の品質が基準を満たしていません",
            "The face image does not meet the required quality",
        ),
        "no_face": ("顔が見つかりません", "No face found"),
        "malformed": ("入力内容が正しくありません", "The input is not valid"),
        "oversized": ("入力が大きすぎます", "The input is too large"),
        "wrong_state": (
            "このエントリーは現在の状態ではその操作ができません",
            "The entry's state does not allow this",
        ),
        "entry_not_found": ("エントリーが見つかりません", "No such entry"),
        "rate_limited": (
            "操作が多すぎます。少し待ってから再度お試しください",
            "Too many requests; wait a moment and try again",
        ),
        "account_disabled": ("アカウントが無効です", "The account is disabled"),
        "account_exists": ("そのユーザー名は既に使われています", "That username is taken"),
        "account_protected": (
            "自分自身や最後の有効な管理者は無効にできません",
            "You cannot disable yourself or the last enabled admin",
        ),
        "token_not_found": ("そのAPIトークンは見つかりません", "No such API token"),
        "request_outcome": (  # auditor, requests and complaints pages
            "この結果では請求を完了できません",
            "The request cannot be closed this way",
        ),
        # every other code of docs/protocol.md "## Error codes" (tests/test_error_labels.py)
        "verification_failed": ("暗号による検証に失敗しました", "A cryptographic check failed"),
        "bad_signature": ("署名を検証できません", "A signature does not verify"),
        "threshold_not_met": ("必要な数の署名がありません", "Fewer valid signatures than required"),
        "decryption_failed": ("暗号文を復号できません", "The sealed message cannot be opened"),
        "commitment_mismatch": (
            "内容がコミットメントと一致しません",
            "The content does not open its commitment",
        ),
        "bad_proof": ("マークル証明を検証できません", "A Merkle proof does not verify"),
        "fork_clearance_inconsistent": (
            "分岐解消の記録が検証済みの履歴と合いません",
            "A fork clearance does not extend the verified head",
        ),
        "fork_detected": (
            "参加者のログに矛盾する履歴が見つかりました",
            "The peer's log contradicts its verified history",
        ),
        "unknown_peer": ("送信元は共同利用の参加者ではありません", "The sender is not a member of the group"),
        "misaddressed": ("別のノード宛てのメッセージです", "The message is addressed to another node"),
        "no_organisation_key": (
            "マニフェストに団体のオンライン鍵がありません",
            "The manifest names no online key of the organisation",
        ),
        "no_referral_key": (
            "団体のオンライン鍵がないため回付できません",
            "No online key of the organisation to sign a referral with",
        ),
        "already_referred": ("この苦情はすでに回付されています", "The complaint was referred already"),
        "not_referred": ("この事業者へ回付された苦情ではありません", "The complaint was not referred to this member"),
        "already_answered": ("この苦情にはすでに別の回答があります", "The complaint was answered otherwise already"),
        "unknown_complaint": ("該当する苦情がありません", "No such complaint"),
        "stale": ("有効ですが新しくありません", "Authentic but not fresh"),
        "expired": ("有効期限が切れています", "Past its expiry"),
        "rollback": ("信頼済みのものより古い版です", "Not newer than what is already trusted"),
        "replay": ("同じメッセージが再送されました", "The same message was sent again"),
        "replay_cache_full": (
            "再送防止の記録が一杯です。後で再試行してください",
            "The replay cache is full; retry later",
        ),
        "clock_skew": ("送信時刻が許容範囲外です", "The sending time is outside the accepted window"),
        "manifest_version": (
            "信頼していない版のマニフェストです",
            "A manifest version this node does not trust",
        ),
        "backup_invalid": ("バックアップファイルが完全ではありません", "The backup file is not whole"),
        "unknown_log": ("立会いの対象ではないログです", "A log this witness does not witness"),
        "checkpoint_conflict": (
            "チェックポイントの大きさが前回の連署と合いません",
            "The checkpoint's old size is not the last cosigned size",
        ),
        "witness_ahead": (
            "立会人がこのノードの保持分より先まで連署しています",
            "A witness cosigned beyond what this node holds",
        ),
        "receipt_history_mismatch": (
            "削除の受領証が別の履歴を指しています",
            "The deletion receipt names another history",
        ),
        "witness_mismatch": (
            "立会人のチェックポイントとログが一致しません",
            "A witnessed checkpoint that the log does not extend",
        ),
        "cosignatures_missing": ("立会人の連署が足りません", "Fewer witness cosignatures than required"),
        "configuration": ("ノードの設定に誤りがあります", "The node is misconfigured"),
        "error": ("要求は拒否されました", "The request was refused"),
        "policy_refused": ("規則により拒否されました", "Refused by policy"),
        "not_a_member": ("共同利用の参加者ではありません", "Not a member of the group"),
        "member_not_active": ("参加資格が停止されています", "The member is suspended"),
        "purpose_not_allowed": (
            "共同利用の目的に含まれない利用目的です",
            "A purpose the group does not list",
        ),
        "item_not_shared": ("共同利用の項目に含まれない項目です", "An item the group does not share"),
        "no_recent_match": (
            "この登録は直近24時間の照合で一致していないため、顔画像は提供されません",
            "This entry was not named in a match within 24 hours, so its face is not given",
        ),
        "no_reference_face": ("この登録には顔画像がありません", "This entry has no face image"),
        "crop_erased": ("カメラ画像は消去されています", "The camera image has been erased"),
        "model_mismatch": ("指定と異なる顔識別モデルです", "A face-recognition model other than the group's"),
        "query_mode_not_allowed": ("受け付けていない照会方式です", "A query mode that is not accepted"),
        "invalid_manifest": ("マニフェストの内容に矛盾があります", "The manifest is not coherent"),
        "fork_clearance_mismatch": ("別の参加者の分岐解消記録です", "A fork clearance of another member"),
        "no_legal_basis": ("第三者提供の法的根拠がありません", "No known legal basis for the provision"),
        "report_mismatch": ("集計できない報告の組合せです", "Reports that cannot be added up"),
        "report_signature": ("報告の署名を検証できません", "The report's signature does not verify"),
        "database_unavailable": (
            "データベースに接続できません。しばらくして再試行してください",
            "The database is unavailable; retry shortly",
        ),
        "internal": ("内部エラーが発生しました", "An internal error occurred"),
        "busy": ("混み合っています。しばらくして再試行してください", "Busy; retry shortly"),
        "body_timeout": ("送信が時間内に完了しませんでした", "The body did not arrive in time"),
        "too_many_connections": ("接続が多すぎます", "Too many connections"),
        "store_tampered": ("保存データの改ざんが検出されました", "The stored data has been tampered with"),
        "store_unverified": ("保存データを検証できていません", "The stored data is not verified"),
        "restoring": ("復元中です", "Restoring"),
        "restore_incomplete": ("復元が完了していません", "The restore is not complete"),
        "hit_budget_exceeded": ("一致の回答数の上限に達しました", "The match answer budget is used up"),
        "probe_burst": ("短時間の照会が多すぎます", "Too many queries in a short time"),
        "peer_unreachable": ("参加者に接続できません", "The peer cannot be reached"),
        "peer_timeout": ("参加者の応答が時間内にありません", "The peer did not answer in time"),
        "peer_refused": ("参加者が要求を拒否しました", "The peer refused the request"),
        "http_error": ("参加者から想定外の応答がありました", "The peer answered unexpectedly"),
        "circuit_open": (
            "失敗が続いたため参加者への送信を一時停止しています",
            "Sending to the peer is paused after repeated failures",
        ),
        "not_ready": ("まだ準備ができていません", "Not ready yet"),
        "deletion_pending": ("削除の処理中です", "A deletion is in progress"),
        "disk_full": ("ディスクの空き容量が足りません", "The disk is full"),
        "empty_log": ("ログにまだ記録がありません", "The log has nothing in it yet"),
        "eval_key_not_loaded": (
            "照合用の評価鍵がまだ読み込まれていません",
            "The evaluation key is not loaded yet",
        ),
        "fork_unproven": ("分岐の証拠が確認できません", "The fork is not proven"),
        "forward_conflict": (
            "転送された請求が既存の請求と食い違います",
            "The forwarded request conflicts with one already held",
        ),
        "forward_rate_limited": ("請求の転送が多すぎます", "Too many forwarded requests"),
        "gallery_rebuilt": (
            "照合用データが作り直されました。もう一度照会してください",
            "The gallery was rebuilt; query again",
        ),
        "image_too_large": ("画像が大きすぎます", "The image is too large"),
        "malformed_ciphertext": ("暗号文の形式が正しくありません", "The ciphertext is not well formed"),
        "no_clearance": ("分岐の解消記録がありません", "There is no fork clearance"),
        "no_manifest": ("マニフェストがまだありません", "There is no manifest yet"),
        "register_full": ("登録簿が上限に達しています", "The register is full"),
        "stale_eval_key": ("評価鍵が古くなっています", "The evaluation key is out of date"),
        "unknown_eval_key": ("評価鍵が登録されていません", "The evaluation key is unknown"),
        "unknown_private_query": ("該当する秘匿照会がありません", "No such private query"),
    },
    # operator and network pages
    "alert": {
        "open": ("未確認", "To check"),
        "confirmed": ("本人と確認", "Confirmed"),
        "false-match": ("誤検知", "False match"),
        "withdrawn": ("取り下げ（登録元が削除）", "Withdrawn (the entry was deleted)"),
    },
    "membership": {
        "active": ("参加中", "Active"),
        "suspended": ("一時停止", "Suspended"),
        "removed": ("脱退", "Removed"),
    },
    "health": {
        "ok": ("正常", "OK"),
        "degraded": ("一部失敗", "Degraded"),
        "failing": ("同期失敗中", "Failing"),
        "unreachable": ("応答なし", "Unreachable"),
        "forked": ("ログの改ざんを検知（停止中）", "Log rewritten: stopped"),
        "never-synced": ("未同期", "Not synced yet"),
        "suspended": ("参加停止中", "Suspended"),
        "removed": ("脱退", "Removed"),
    },
    "sync": {
        "ok": ("正常", "OK"),
        "forked": ("ログの改ざんを検知（停止中）", "Log rewritten: stopped"),
        "never-synced": ("未同期", "Not synced yet"),
    },
    "event": {
        "deleted": ("削除", "Deleted"),
        "expired": ("期限切れ削除", "Expired"),
        "corrected": ("訂正", "Corrected"),
    },
    "query_mode": {
        "plain": ("通常照会", "Plain"),
        "private": ("秘匿照会（暗号化したまま照合）", "Private (matched while encrypted)"),
    },
    # auditor, requests and complaints pages
    "request_kind": {
        "disclosure": ("開示", "Disclosure"),
        "correction": ("訂正", "Correction"),
        "deletion": ("消去", "Deletion"),
        "cease-of-use": ("利用停止", "Cease of use"),
    },
    "identity": {
        "drivers-licence": ("運転免許証", "Driver's licence"),
        "my-number-card": ("マイナンバーカード", "My Number card"),
        "passport": ("パスポート", "Passport"),
        "residence-card": ("在留カード", "Residence card"),
        "health-insurance-card": ("健康保険証", "Health insurance card"),
        "agent-with-power-of-attorney": ("任意代理人（委任状）", "Agent with power of attorney"),
        "legal-representative": ("法定代理人", "Legal representative"),
    },
    "outcome": {
        "disclosed": ("開示した", "Disclosed"),
        "granted": ("対応済み（受領証で確認）", "Done (confirmed by receipts)"),
        "nothing-held": ("保有なし", "Nothing held"),
        "refused": ("拒否（法令上の根拠あり）", "Refused (on a legal ground)"),
        "withdrawn": ("取下げ", "Withdrawn"),
    },
    "ground": {
        "cabinet-order-5-i": ("施行令第5条第1号", "Cabinet Order Art. 5 (i)"),
        "cabinet-order-5-ii": ("施行令第5条第2号", "Cabinet Order Art. 5 (ii)"),
        "cabinet-order-5-iii": ("施行令第5条第3号", "Cabinet Order Art. 5 (iii)"),
        "cabinet-order-5-iv": ("施行令第5条第4号", "Cabinet Order Art. 5 (iv)"),
        "art-33-2-i": ("法第33条第2項第1号", "APPI Art. 33-2 (i)"),
        "art-33-2-ii": ("法第33条第2項第2号", "APPI Art. 33-2 (ii)"),
        "art-33-2-iii": ("法第33条第2項第3号", "APPI Art. 33-2 (iii)"),
    },
    "case_status": {
        "open": ("対応中", "Open"),
        "closed": ("完了", "Closed"),
    },
    "log_event": {
        "registered": ("登録", "Registered"),
        "corrected": ("訂正", "Corrected"),
        "deleted": ("削除", "Deleted"),
        "expired": ("期限切れ削除", "Expired"),
        "provision": ("第三者提供", "Third-party provision"),
    },
    "receipt": {
        "purged": ("消去済み", "Purged"),
        "corrected": ("訂正済み", "Corrected"),
    },
    "channel": {
        "public": ("一般の受付（Web）", "Public form"),
        "counter": ("店頭", "Counter"),
        "phone": ("電話", "Phone"),
        "mail": ("郵便・メール", "Mail"),
        "organisation": ("認定個人情報保護団体から", "Via the organisation"),
    },
    "complaint": {
        "misidentification": ("誤認（人違い）", "Misidentification"),
        "registration": ("登録について", "Registration"),
        "data-handling": ("データの取扱い", "Data handling"),
        "notice": ("公表・掲示", "Notice"),
        "request-handling": ("請求への対応", "Request handling"),
        "other": ("その他", "Other"),
    },
    "delivery": {  # why a referral or an answer has not arrived yet
        "unreachable": ("相手に接続できません", "The other side is unreachable"),
        "http": ("相手が受け取りを拒否しました", "The other side refused it"),
        "no_manifest_url": ("団体の URL が設定されていません", "No organisation URL is configured"),
        "not_a_member": ("共同利用の参加者ではありません", "Not a member of the group"),
    },
    "complaint_outcome": {
        "resolved": ("解決", "Resolved"),
        "rejected": ("理由なしとして終了", "Rejected as unfounded"),
        "referred": ("他の事業者・団体へ移送", "Referred"),
    },
}
"""Labels for codes shown to staff, by kind; an unknown code is shown as itself."""


def label_anywhere(code: str, index: int) -> str | None:
    """The name of ``code`` in whichever kind has it (0 Japanese, 1 English), or ``None``."""
    for kind, names in LABELS.items():
        if kind != "error" and code in names:
            return names[code][index]
    return None
