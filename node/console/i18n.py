"""The console's words in Japanese and English, looked up by key, never built from user input.

Store staff read the console in Japanese; head-office and auditors often in English. Every
label, button and explanation is a key here with both texts, so a page can never show one
language half-translated: a missing key is an error (``KeyError``), which the tests render
every page in both languages to catch. Codes from the rules (categories, evidence kinds) get
a label when one is known and are shown as the code otherwise, since a group may add its own.
Every stable error code of docs/protocol.md has a label here (``LABELS["error"]``,
tests/test_error_labels.py), so an error page's headline is in the page's language. Details that
come from the domain (a rule violation, a quality failure) are still the domain's English words
under that headline: they carry no code yet.
"""

from __future__ import annotations

from governance.findings import Finding, Value
from node.code_labels import LABELS

__all__ = ["LABELS", "MESSAGES", "Translator"]

MESSAGES: dict[str, tuple[str, str]] = {
    "app.title": ("watchnet スタッフ画面", "watchnet staff console"),
    "app.skip": ("本文へ移動", "Skip to content"),
    "app.switch": ("English", "日本語"),
    "app.switch_label": ("表示言語を英語に切り替える", "Show this page in Japanese"),
    "app.signed_in_as": ("ログイン中", "Signed in as"),
    "app.logout": ("ログアウト", "Sign out"),
    "app.back": ("戻る", "Back"),
    "login.title": ("ログイン", "Sign in"),
    "login.username": ("ユーザー名", "Username"),
    "login.password": ("パスワード", "Password"),
    "login.submit": ("ログイン", "Sign in"),
    "login.failed": (
        "ユーザー名またはパスワードが違います。失敗が続くと、この接続元からのログインはしばらく受け付けられません。時間をおいてもう一度お試しください。",
        "Wrong username or password. After repeated failures, sign-in from this address is paused for a while; wait and try again.",
    ),
    "login.disabled": (
        "このアカウントは無効になっています。管理者に有効化を依頼してください。",
        "This account is disabled. Ask an admin to re-enable it.",
    ),
    "login.expired": (
        "一定時間操作がなかったため、ログアウトしました。もう一度ログインしてください。",
        "You were signed out after a period of inactivity. Please sign in again.",
    ),
    "login.stale": (
        "フォームの有効期限が切れました。もう一度入力してください。",
        "The form expired. Please enter your details again.",
    ),
    "login.logged_out": ("ログアウトしました。", "You have signed out."),
    "login.hint": (
        "登録担当者と責任者は、このノードのスタッフアカウントでログインします。",
        "Registrars and officers sign in with their staff account on this node.",
    ),
    "home.title": ("スタッフ画面", "Staff console"),
    "home.no_pages": (
        "あなたの役割（{role}）の画面はまだありません。コマンドラインまたは API をご利用ください。",
        "There is no console page for your role ({role}) yet; use the command line or the API.",
    ),
    "reg.title": ("登録担当: 登録の申請", "Registrar: propose an entry"),
    "reg.upload_heading": ("1. 写真から顔を確認する", "1. Check the face in a photo"),
    "reg.upload_help": (
        "事案の写真（JPEG または PNG）を選んでください。送信前に、検出された顔と品質チェックの結果を表示します。",
        "Choose a photo of the incident (JPEG or PNG). The detected face and its quality checks are shown before anything is submitted.",
    ),
    "reg.photo": ("写真", "Photo"),
    "reg.check": ("顔を確認する", "Check the face"),
    "reg.mine_heading": ("自分の申請", "My proposals"),
    "reg.mine_empty": ("申請はまだありません。", "No proposals yet."),
    "reg.proposed_ok": (
        "申請しました。責任者の承認を待っています。",
        "Proposed. It now waits for an officer's approval.",
    ),
    "prev.title": ("登録担当: 顔の確認", "Registrar: check the face"),
    "prev.crop_alt": ("検出された顔（切り出し画像）", "The detected face (cropped)"),
    "prev.faces_found": (
        "写真の中の顔: {count}（検出スコアが最も高い顔を使います）",
        "Faces in the photo: {count} (the best-detected one is used)",
    ),
    "prev.checks_heading": ("品質チェック", "Quality checks"),
    "prev.check": ("チェック", "Check"),
    "prev.measured": ("測定値", "Measured"),
    "prev.required": ("基準", "Required"),
    "prev.result": ("結果", "Result"),
    "prev.pass": ("合格", "Pass"),
    "prev.fail": ("不合格", "Fail"),
    "prev.refused": (
        "この顔は登録規則の品質基準を満たしていないため、申請できません。別の写真を選んでください。",
        "This face does not meet the quality the registration rules require, so it cannot be proposed. Choose another photo.",
    ),
    "prev.no_face": (
        "写真の中に顔が見つかりませんでした。顔が正面から写っている写真を選んでください。",
        "No face was found in the photo. Choose a photo that shows the face from the front.",
    ),
    "prev.bad_image": (
        "画像を読み込めませんでした（JPEG または PNG が必要です）。",
        "The image could not be read (a JPEG or PNG is needed).",
    ),
    "prev.none": (
        "確認中の写真はありません。写真をアップロードしてください。",
        "No photo is being checked. Upload one first.",
    ),
    "prev.details_heading": (
        "2. 事案の内容（登録規則で認められた項目のみ）",
        "2. The incident (only what the registration rules allow)",
    ),
    "prev.category": ("事案の種別", "Incident category"),
    "prev.evidence_kind": ("証跡の種別", "Evidence kind"),
    "prev.evidence_reference": (
        "証跡の番号（例: 被害届の受理番号）",
        "Evidence reference (e.g. police report number)",
    ),
    "prev.evidence_reference_help": (
        "英数字と / _ . # : - のみ（氏名や経緯などの記述は入力できません）。",
        "Letters, digits and / _ . # : - only (no names or narrative).",
    ),
    "prev.incident_date": ("事案発生日", "Incident date"),
    "prev.site": ("店舗・拠点コード", "Site code"),
    "prev.retention": (
        "保存期間: 承認から {days} 日で自動削除されます。",
        "Retention: deleted automatically {days} days after approval.",
    ),
    "prev.submit": ("この内容で申請する", "Propose this entry"),
    "prev.discard": ("取り消す", "Discard"),
    "prev.again": ("別の写真を確認する", "Check another photo"),
    "check.detection_score": ("検出スコア", "Detection score"),
    "check.face_pixels": ("顔の幅（ピクセル）", "Face width (pixels)"),
    "check.yaw_degrees": ("顔の向き（左右の角度）", "Head turn (degrees)"),
    "check.sharpness": ("鮮明さ", "Sharpness"),
    "check.at_least": ("{limit} 以上", "at least {limit}"),
    "check.at_most": ("{limit} 以下", "at most {limit}"),
    "off.title": ("責任者: 承認待ちと登録中の一覧", "Officer: approval queue and active entries"),
    "off.queue_heading": ("承認待ちの申請", "Waiting for approval"),
    "off.queue_empty": ("承認待ちの申請はありません。", "Nothing waits for approval."),
    "off.active_heading": ("登録中のエントリー", "Active entries"),
    "off.active_empty": ("登録中のエントリーはありません。", "No active entries."),
    "off.lost_heading": (
        "バックアップからの復元で失われたエントリー",
        "Entries lost in a restore from a backup",
    ),
    "off.lost_help": (
        "バックアップの後に登録・承認・訂正されたため、復元で内容を取り戻せなかったエントリーです。照合には使われません。証拠に基づいて登録し直してください。",
        "Registered, approved or corrected after the backup, so the restore could not recover them. "
        "They never match; register them again from their evidence.",
    ),
    "off.crop_alt": ("申請された顔（切り出し画像）", "The proposed face (cropped)"),
    "off.no_crop": ("顔画像なし", "No face image"),
    "off.rules_ok": (
        "登録規則（種別・証跡・事案日・保存期間）をすべて満たしています。",
        "Meets every registration rule (category, evidence, incident date, retention).",
    ),
    "off.rules_broken": ("登録規則に反しています:", "Breaks the registration rules:"),
    "off.own": (
        "この申請の登録担当者はあなたです（二者確認ルールにより承認できません）。",
        "You proposed this entry (the two-person rule stops you approving it).",
    ),
    "off.approve": ("承認する", "Approve"),
    "off.reject": ("却下する", "Reject"),
    "off.reject_reason": ("却下の理由", "Reason for rejecting"),
    "off.correct": ("訂正する", "Correct"),
    "off.correct_heading": ("訂正", "Correct"),
    "off.correct_reason": ("訂正の理由", "Reason for the correction"),
    "off.delete": ("削除する", "Delete"),
    "off.delete_heading": ("削除", "Delete"),
    "off.delete_reason": ("削除の理由", "Reason for deleting"),
    "off.delete_warning": (
        "削除すると顔データと証跡番号は消去され、参加事業者にも削除が伝わります。元に戻せません。",
        "Deleting erases the face data and evidence reference and tells every member; it cannot be undone.",
    ),
    "off.approved": ("承認しました。エントリーは登録中になりました。", "Approved: the entry is now active."),
    "off.rejected": ("却下しました。顔データは消去されました。", "Rejected: the face data was erased."),
    "off.corrected": (
        "訂正しました（新しい版に署名しました）。",
        "Corrected: a new signed version was issued.",
    ),
    "off.deleted": ("削除しました。顔データは消去されました。", "Deleted: the face data was erased."),
    "off.deletion_pending": (
        "削除を決定しました。この人物はもう照合されません。ディスクが一杯などの理由でまだ書き込めていませんが、"
        "書き込めるようになり次第ノードが書き込み、加盟店に通知します。",
        "Deletion decided: the person no longer matches. It could not be written yet (the disk may "
        "be full); the node writes it as soon as it can, then notifies the members.",
    ),
    "off.unchanged": (
        "訂正する内容がありません（種別も証跡も変わっていません）。",
        "Nothing to correct: the category and evidence are unchanged.",
    ),
    "col.entry": ("エントリー", "Entry"),
    "col.face": ("顔", "Face"),
    "col.status": ("状態", "Status"),
    "col.category": ("種別", "Category"),
    "col.evidence": ("証跡", "Evidence"),
    "col.incident_date": ("事案発生日", "Incident date"),
    "col.site": ("拠点", "Site"),
    "col.proposed_at": ("申請日時", "Proposed"),
    "col.registrar": ("登録担当者", "Registrar"),
    "col.expires": ("削除予定日", "Scheduled deletion"),
    "col.version": ("版", "Version"),
    "col.reason": ("理由", "Reason"),
    "col.rules": ("登録規則", "Registration rules"),
    "col.decision": ("判断", "Decision"),
    "error.title": ("処理できませんでした", "This could not be done"),
    "error.details": ("詳細", "Details"),
    "error.technical": ("技術的な情報（英語、システム担当者向け）", "Technical details"),
    # operator and network pages
    "nav.label": ("画面の切り替え", "Console pages"),
    "nav.registrar": ("登録の申請", "Propose entries"),
    "nav.officer": ("承認と登録中の一覧", "Approvals and entries"),
    "nav.operator": ("照合アラート", "Match alerts"),
    "nav.network": ("ネットワークの状態", "Network status"),
    "nav.accounts": ("アカウント管理", "Accounts"),
    "nav.cameras": ("カメラ", "Cameras"),
    # cameras page
    "cameras.title": ("カメラ", "Cameras"),
    "cameras.list_heading": ("この店舗のカメラ", "This store's cameras"),
    "cameras.list_help": (
        "ノードの設定（[[cameras]]）にあるカメラと、カメラワーカー（watchnet camera run）が最後に報告した状態です。"
        "カメラの追加と削除は watchnet camera add / remove で行います。映像や顔画像はここにも、どこにも保存されません。",
        "The cameras in the node's config ([[cameras]]) and the state the camera worker (watchnet camera run) "
        "last reported. Add and remove cameras with watchnet camera add / remove. No frame or face is kept, "
        "here or anywhere.",
    ),
    "cameras.caption": (
        "カメラ、設置場所、状態と照合の数",
        "Cameras, where they are, their state and matches",
    ),
    "cameras.none": (
        "カメラはまだありません。watchnet camera add で追加してください。",
        "No camera yet; add one with watchnet camera add.",
    ),
    "cameras.worker_reported": (
        "カメラワーカーの最終報告: {time}",
        "The camera worker last reported at {time}",
    ),
    "cameras.worker_stale": (
        "カメラワーカーの報告が {time} から途絶えています。watchnet camera run が動いているか確認してください。",
        "The camera worker has not reported since {time}; check that watchnet camera run is running.",
    ),
    "cameras.worker_none": (
        "カメラワーカーの報告がありません。watchnet camera run で起動してください。",
        "No report from the camera worker; start it with watchnet camera run.",
    ),
    "deliveries.heading": ("アラートの通知先", "Where alerts are sent"),
    "deliveries.help": (
        "照合アラートは設定（[[webhooks]]・[[email]]）の通知先に送られます。送れなかったものは間隔を空けて再送し続けます。"
        "顔画像や特徴量は送りません。",
        "Match alerts are sent to the targets in the config ([[webhooks]], [[email]]); what could not be "
        "sent is retried with growing pauses. No face image or embedding is sent.",
    ),
    "deliveries.caption": (
        "通知先、送った数、未送信の数と最後のエラー",
        "Targets, alerts sent, still owed, last error",
    ),
    "deliveries.kind_webhook": ("Webhook（署名付き）", "Webhook (signed)"),
    "deliveries.kind_email": ("メール", "E-mail"),
    "deliveries.all_sites": ("すべての店舗", "Every site"),
    "col.delivery_target": ("通知先", "Target"),
    "col.target_kind": ("方式", "Kind"),
    "col.target_where": ("宛先", "Address"),
    "col.delivered": ("送信済み", "Sent"),
    "col.pending": ("未送信", "Owed"),
    "col.camera": ("カメラ", "Camera"),
    "col.gate": ("出入口", "Gate"),
    "col.stream": ("映像の取得先", "Stream"),
    "col.camera_state": ("状態", "State"),
    "col.sampling": ("解析の頻度", "Sampling"),
    "col.faces_min": ("顔の数（毎分）", "Faces a minute"),
    "col.latency": ("照合までの時間（中央値 / 99%）", "Time to answer (p50 / p99)"),
    "col.camera_alerts": ("アラート", "Alerts"),
    "locks.heading": ("ログインの一時ロック", "Sign-in locks"),
    "locks.help": (
        "同じ接続元からパスワードを何度も間違えると、そのアカウントとその接続元の組み合わせだけが、待ち時間のあと一時的にロックされ、時間が経つと自動で解除されます。アカウントの無効化や API トークン、他の接続元からのログインには影響しません。本人からの連絡を確認できたら、ここで解除できます（監査ログに記録されます）。",
        "Repeated wrong passwords from one address delay, then temporarily lock, that account from that address only; the lock ends by itself. It never disables the account, its API tokens or sign-ins from other addresses. Once the staff member has confirmed it was them, you can clear it here (recorded in the audit log).",
    ),
    "locks.caption": ("遅延中またはロック中のログイン", "Delayed or locked sign-ins"),
    "locks.empty": ("ロックされているログインはありません。", "No sign-in is delayed or locked."),
    "locks.clear": ("解除", "Clear"),
    "locks.cleared": ("ログインのロックを解除しました。", "The sign-in lock was cleared."),
    "locks.waiting": ("{time} まで待機", "waiting until {time}"),
    "col.account": ("アカウント", "Account"),
    "col.source": ("接続元", "Source address"),
    "col.failed_sign_ins": ("失敗回数", "Failed sign-ins"),
    "col.locked_until": ("ロック解除予定", "Locked until"),
    "op.title": ("運用担当: 照合アラート", "Operator: match alerts"),
    "op.help": (
        "グループの照合基準（類似度 {threshold} 以上）に達した照合結果です。顔画像は表示されません。本人かどうかを確認し、確認済みか誤検知かを記録してください。",
        "Matches at or above the group's threshold (similarity {threshold}). No face image is shown. Check the person and record whether it was really them or a false match.",
    ),
    "op.live_off": (
        "新しいアラートを表示するには、ページを再読み込みしてください。",
        "Reload the page to see new alerts.",
    ),
    "op.live_on": (
        "自動更新中: 新しいアラートと取り下げはこの画面にすぐ表示されます。",
        "Live: new alerts and withdrawals appear here as they happen.",
    ),
    "op.live_reconnecting": (
        "ノードとの接続が切れました。再接続しています…",
        "The connection to the node dropped; reconnecting…",
    ),
    "op.live_lost": (
        "自動更新が止まりました。ページを再読み込みしてください。",
        "Live updates stopped. Reload the page.",
    ),
    "op.reload": ("再読み込み", "Reload"),
    "op.open_heading": ("未確認のアラート", "Alerts to check"),
    "op.open_caption": (
        "未確認のアラート（新しい順）: 登録元の事業者、種別、一致の強さ、拠点",
        "Alerts to check, newest first: the member that registered the entry, category, match (or strong match), site",
    ),
    "op.open_empty": ("未確認のアラートはありません。", "No alerts to check."),
    "op.details": ("顔を見て確認する", "Check the faces"),
    "op.sightings": ("目撃 {count} 件", "{count} sightings"),
    "alert.title": ("運用担当: アラートの確認", "Operator: check an alert"),
    "alert.back": ("アラート一覧に戻る", "Back to the alerts"),
    "alert.camera_caption": ("カメラが捉えた顔", "The face the camera saw"),
    "alert.camera_alt": ("カメラが捉えた顔（切り出し画像）", "The face the camera saw (cropped)"),
    "alert.camera_none": (
        "カメラ画像はありません（特徴量だけで照合されました）",
        "No camera image (matched from an embedding only)",
    ),
    "alert.camera_erased.window": (
        "確認期間が過ぎたため、カメラ画像は消去されました",
        "The camera image was erased at the end of the review window",
    ),
    "alert.camera_erased.false-match": (
        "誤検知と判断されたため、カメラ画像は消去されました",
        "The camera image was erased when the alert was judged a false match",
    ),
    "alert.camera_erased.withdrawn": (
        "登録元が登録を削除したため、カメラ画像は消去されました",
        "The camera image was erased when the owner withdrew the entry",
    ),
    "alert.camera_erased.entry-closed": (
        "登録が削除されたため、カメラ画像は消去されました",
        "The camera image was erased when the entry was closed",
    ),
    "alert.reference_caption": ("登録時の顔", "The registered face"),
    "alert.reference_alt": ("登録時の顔（切り出し画像）", "The registered face (cropped)"),
    "alert.reference_refused": ("登録時の顔画像を表示できません", "The registered face cannot be shown"),
    "alert.reference_withdrawn": ("登録が取り下げられました", "The entry was withdrawn"),
    "alert.reference_judged": (
        "判定済みのため、登録時の顔は表示しません",
        "Judged already: the registered face is no longer shown",
    ),
    "alert.erase_note": (
        "カメラ画像は確認のためだけに暗号化して{hours}時間保管し、{when}に消去します。この画面の画像は保存されません。",
        "The camera image is kept encrypted for {hours} hours for this review only and erased at {when}. Nothing on this page is stored.",
    ),
    "alert.sightings_heading": ("目撃の記録", "Sightings"),
    "alert.sightings_caption": (
        "同じ人物が数分のうちに別の出入口や店舗で捉えられた記録",
        "Where and when the same person was seen within a few minutes",
    ),
    "alert.sightings_empty": ("目撃の記録はありません。", "No sightings recorded."),
    "alert.col_face": ("カメラ画像", "Camera image"),
    "alert.next_heading": ("次にすること", "What to do next"),
    "alert.procedure_missing": (
        "対応手順が設定されていません。管理者に設定（[alerts] procedure）を依頼してください。",
        "No response procedure is configured; ask an admin to set [alerts] procedure.",
    ),
    "alert.false_match_help": (
        "別人だった場合は「誤検知」を選んでください。カメラ画像はその場で消去され、登録元に伝えられます。",
        "If it is someone else, choose False match: the camera image is erased at once and the owner is told.",
    ),
    "col.number": ("番号", "No."),
    "col.place": ("場所", "Place"),
    "op.confirm": ("本人と確認", "Confirmed"),
    "op.false_match": ("誤検知", "False match"),
    "op.closed_heading": ("確認済み・取り下げ済み", "Checked and withdrawn"),
    "op.closed_help": (
        "登録元がエントリーを削除したアラートは取り下げとなり、一致の強さと種別は消去されます。",
        "When the member that registered an entry deletes it, its alerts are withdrawn and their match strength and category erased.",
    ),
    "op.closed_caption": (
        "確認済み・取り下げ済みのアラート（新しい順）",
        "Checked and withdrawn alerts, newest first",
    ),
    "op.closed_empty": ("まだありません。", "None yet."),
    "op.confirmed_ok": ("本人と確認したことを記録しました。", "Recorded as confirmed."),
    "op.false_match_ok": ("誤検知として記録しました。", "Recorded as a false match."),
    "op.feedback_recorded": (
        "自社のエントリーのため、結果を記録しました。",
        "The entry is ours; the verdict was recorded here.",
    ),
    "op.feedback_sent": (
        "登録元の事業者に結果を伝えました。",
        "The member that registered the entry has been told.",
    ),
    "op.feedback_failed": (
        "登録元の事業者に結果を伝えられませんでした（接続できません）。記録は残っています。",
        "The member that registered the entry could not be told now (no connection); the verdict is kept here.",
    ),
    "net.title": ("ネットワークの状態", "Network status"),
    "net.manifest_heading": (
        "グループのマニフェスト（現在有効なもの）",
        "The group's manifest (in force now)",
    ),
    "net.manifest_help": (
        "管理団体が署名した共同利用の内容です。このノードはこの版に従って動作します。",
        "The joint use as the administering organisation signed it; this node works by this version.",
    ),
    "net.group": ("グループ", "Group"),
    "net.version": ("版", "Version"),
    "net.expires": ("有効期限", "Expires"),
    "net.expires_in": ("あと {days} 日", "in {days} days"),
    "net.expired": ("期限切れ", "expired"),
    "net.threshold": ("照合基準（類似度）", "Match threshold (similarity)"),
    "net.query_modes": ("照会の方式", "Query modes"),
    "net.retention": ("最長保存期間", "Longest retention"),
    "net.retention_days": ("{days} 日", "{days} days"),
    "net.members_caption": ("共同利用する事業者と参加状態", "Members of the joint use and their status"),
    "net.this_node": ("このノード", "this node"),
    "net.private_only": ("秘匿照会のみ", "private queries only"),
    "net.purposes": ("利用目的", "Purposes"),
    "net.items": ("共同利用する項目", "Items used jointly"),
    "net.administrator": ("管理責任者", "Responsible administrator"),
    "net.admin_name": ("名称", "Name"),
    "net.admin_address": ("住所", "Address"),
    "net.admin_representative": ("代表者", "Representative"),
    "net.admin_contact": ("連絡先", "Contact"),
    "net.peers_heading": ("他の事業者との同期", "Syncing with the other members"),
    "net.peers_help": (
        "各事業者の署名付きイベントログ（削除・訂正）をどこまで検証して取り込んだかを示します。",
        "How far this node has verified and applied each member's signed event log (deletions and corrections).",
    ),
    "net.peers_caption": ("事業者ごとの同期状況", "Sync status per member"),
    "net.peers_empty": ("他の事業者はいません。", "There are no other members."),
    "net.never": ("なし", "never"),
    "net.propagation_heading": (
        "自社の削除・訂正の伝達（署名付き受領証）",
        "Our deletions and corrections reaching the members (signed receipts)",
    ),
    "net.propagation_help": (
        "自社が削除・訂正したエントリーごとに、反映したことを署名付き受領証で返した事業者と、まだ返していない事業者を示します。",
        "For each entry we deleted or corrected: the members that returned a signed receipt for applying it, and those that have not yet.",
    ),
    "net.propagation_summary": (
        "すべて受領済み: {complete} 件 / 受領待ち: {pending} 件",
        "All receipts in: {complete} / waiting for receipts: {pending}",
    ),
    "net.propagation_caption": (
        "削除・期限切れ削除・訂正と、事業者ごとの受領証",
        "Deletions, expiries and corrections, with each member's receipt",
    ),
    "net.propagation_empty": ("削除・訂正はまだありません。", "No deletions or corrections yet."),
    "net.all_confirmed": ("全事業者が受領済み", "every member confirmed"),
    "net.show_pending": ("受領待ちのものだけを表示", "Show only those still waiting"),
    "net.show_all": ("すべて表示", "Show all"),
    "net.next_page": ("次のページ", "Next page"),
    "net.health_ok": (
        "最新の同期は成功し、失敗はありません。",
        "The last sync worked; nothing failed since.",
    ),
    "net.health_degraded": (
        "前回の同期以降に失敗があります（接続はできています）。続く場合は相手先に連絡してください。",
        "Syncs failed since the last one that worked (the member still answers); contact it if this goes on.",
    ),
    "net.health_failing": (
        "同期が続けて失敗しています。削除・訂正が届いていない可能性があります。相手先に連絡してください。",
        "Syncs keep failing: its deletions and corrections may not reach this node. Contact the member.",
    ),
    "net.health_unreachable": (
        "応答がないため問い合わせを一時停止しています。自動で再試行します。",
        "Not answering: exchanges are paused and retried automatically.",
    ),
    "net.health_forked": (
        "検証済みの記録と矛盾するログを受け取ったため同期を停止しました。管理団体に報告してください。",
        "Its log contradicted a head this node verified; syncing stopped. Report it to the organisation.",
    ),
    "net.health_never-synced": ("まだ同期していません。", "Not synced yet."),
    "net.health_suspended": (
        "マニフェストで参加停止中の事業者です。照会もデータのやり取りもしません。",
        "The manifest suspends this member: no queries and no data are exchanged with it.",
    ),
    "net.health_removed": (
        "マニフェストで脱退した事業者です。データのやり取りはしません。",
        "The manifest removed this member: no data is exchanged with it.",
    ),
    "net.error_since": ("前回の同期成功（{time}）以降のエラー:", "Since the last successful sync ({time}):"),
    "net.error_never_synced": ("同期に一度も成功していません:", "No sync has worked yet:"),
    "net.error_older": ("以前のエラー（その後同期に成功）:", "An older error (a sync worked since):"),
    "net.endpoint_http_tag": ("暗号化なし（http）", "Not encrypted (http)"),
    "net.endpoint_http": (
        "この接続先は https ではありません。照会と応答は端から端まで暗号化・署名されていますが、"
        "TLS がないと経路上の誰でも、どの事業者がいつどれだけ通信したかを見られます。https にしてください。",
        "This endpoint is not https. Queries and answers are sealed and signed end to end, but without TLS "
        "anyone on the path sees which members talk, when and how much. Use https.",
    ),
    "net.endpoint_http-loopback_tag": (
        "暗号化なし（http・このマシン内）",
        "Not encrypted (http, this machine)",
    ),
    "net.endpoint_http-loopback": (
        "このマシン内への http 接続です。ローカルのデモでのみ許容されます。"
        "実運用では https にしてください（経路上で通信の有無や量が見えるため）。",
        "Plain http to this machine: acceptable only for the local demo. Use https in production "
        "(without TLS, who talks, when and how much is visible on the path).",
    ),
    "net.endpoint_not-http_tag": ("不明な方式", "Unknown scheme"),
    "net.endpoint_not-http": (
        "この接続先は http でも https でもありません。",
        "This endpoint is neither http nor https.",
    ),
    # accounts page
    "accounts.title": ("アカウント管理", "Staff accounts"),
    "accounts.list_heading": ("アカウント一覧", "Accounts"),
    "accounts.list_help": (
        "無効にしたアカウントは、開いている画面とAPIトークンがただちに使えなくなります。"
        "自分自身と、最後の有効な管理者は無効にできません。すべての操作は監査ログに記録されます。",
        "A disabled account's open pages and API tokens stop working at once. You cannot disable "
        "yourself or the last enabled admin. Every change is recorded in the audit log.",
    ),
    "accounts.caption": (
        "職員のアカウント、ログインの状態とAPIトークン",
        "Staff accounts, sign-in state and API tokens",
    ),
    "accounts.you": ("あなた", "you"),
    "accounts.enabled": ("有効", "Enabled"),
    "accounts.disabled": ("無効", "Disabled"),
    "accounts.enable": ("有効にする", "Enable"),
    "accounts.disable": ("無効にする", "Disable"),
    "accounts.token_issued": ("{username} のAPIトークンを発行しました", "API token issued for {username}"),
    "accounts.token_once": (
        "このトークンは今回しか表示されません（保存されるのはハッシュのみ）。今すぐ安全な場所に控えてください。"
        "有効期限: {time}",
        "This token is shown only now (only its hash is stored): copy it to a safe place. Expires {time}.",
    ),
    "accounts.token_expires": ("{time} まで有効", "valid until {time}"),
    "accounts.token_no_expiry": ("期限なし（旧形式）", "no expiry (older token)"),
    "accounts.token_revoked": ("失効済み", "revoked"),
    "accounts.token_expired": ("期限切れ", "expired"),
    "accounts.revoke": ("失効させる", "Revoke"),
    "accounts.days": ("有効日数", "Valid for (days)"),
    "accounts.issue": ("トークンを発行", "Issue token"),
    "accounts.add_heading": ("アカウントの追加", "Add an account"),
    "accounts.add_help": (
        "ユーザー名は英数字・「-」「_」「.」で3〜48文字、パスワードは{n}文字以上です（コマンドラインと同じ規則）。",
        "Usernames are 3 to 48 letters, digits, '-', '_' or '.'; passwords at least {n} characters "
        "(the same rules as the command line).",
    ),
    "accounts.username": ("ユーザー名", "Username"),
    "accounts.password": ("初期パスワード", "Initial password"),
    "accounts.password_again": ("初期パスワード（確認）", "Initial password (again)"),
    "accounts.add": ("追加する", "Add account"),
    "accounts.added_notice": ("アカウントを追加しました。", "The account was added."),
    "accounts.enabled_notice": ("アカウントを有効にしました。", "The account was enabled."),
    "accounts.disabled_notice": (
        "アカウントを無効にしました。その画面とAPIトークンは使えなくなりました。",
        "The account was disabled; its sessions were ended and its API tokens no longer work.",
    ),
    "accounts.revoked_notice": ("APIトークンを失効させました。", "The API token was revoked."),
    "col.role": ("役割", "Role"),
    "col.account_state": ("状態", "State"),
    "col.last_sign_in": ("最終ログイン", "Last sign-in"),
    "col.tokens": ("APIトークン", "API tokens"),
    "col.actions": ("操作", "Actions"),
    "col.time": ("日時", "Time"),
    "col.owner": ("登録元", "Registered by"),
    "col.band": ("一致の強さ", "Match"),
    "band.match": ("一致", "match"),
    "band.strong": ("強い一致", "strong match"),
    "col.verdict": ("確認結果", "Verdict"),
    "col.member": ("事業者", "Member"),
    "col.membership": ("参加状態", "Membership"),
    "col.endpoint": ("接続先", "Endpoint"),
    "col.sync": ("同期", "Sync"),
    "col.log_size": ("検証済みイベント数", "Events verified"),
    "col.failures": ("連続失敗", "Failures in a row"),
    "col.last_sync": ("最終同期", "Last sync"),
    "col.last_contact": ("最終接続", "Last contact"),
    "col.last_error": ("最後のエラー", "Last error"),
    "col.clock_skew": ("時刻のずれ", "Clock offset"),
    "net.seconds": ("秒", "s"),
    "net.clock_warning": ("(NTPを確認してください)", "(check NTP)"),
    "net.circuit_open": ("応答なしのため一時停止中", "paused: not answering"),
    "col.when": ("日時", "When"),
    "col.change": ("変更", "Change"),
    "col.confirmed": ("受領済み", "Confirmed by"),
    "col.missing": ("受領待ち", "Still missing"),
    # auditor, requests and complaints pages
    "nav.requests": ("本人からの請求", "Data-subject requests"),
    "nav.complaints": ("苦情", "Complaints"),
    "nav.audit": ("監査ログ", "Audit log"),
    "nav.log": ("イベントログ", "Event log"),
    "nav.report": ("透明性レポート", "Transparency report"),
    "ver.heading": ("検証結果", "Verification"),
    "ver.verified": (
        "検証済み: 記録の書き換えや欠落は見つかりませんでした。",
        "Verified: nothing was altered or removed.",
    ),
    "ver.failed": (
        "検証失敗: 記録が書き換えられたか、欠けています。下の問題を確認してください。",
        "Verification FAILED: records were altered or are missing. See the problems below.",
    ),
    "ver.problems": ("見つかった問題", "Problems found"),
    "ver.checks": ("確認できた項目", "What was verified"),
    "ver.how": (
        "このページを開くたびに、保存されている記録から watchnet audit verify と同じ手順で計算しています（生体データは読みません）。",
        "Computed from the stored records each time this page is opened, by the same checks as watchnet audit verify (no biometric data is read).",
    ),
    "ver.incremental": (
        "このページを前回開いた後の記録だけを検証しました: {what}。それより前の記録は {checked_at} に検証済みです（最後にすべてを検証したのは {full_at}）。",
        "Only what was added since this page was last opened was verified now: {what}. The records before it were verified at {checked_at} (everything was last verified at {full_at}).",
    ),
    "ver.incremental_audit": ("記録 {seq} の後の {new} 件", "{new} records after record {seq}"),
    "ver.incremental_log": ("以前の {size} 件の後の {new} 件", "{new} events after the {size} before"),
    "ver.full": (
        "すべての記録を最初から検証しました（{at}）。次に開いたときは、それ以後に加わった記録だけを検証します。",
        "Every record was verified from the first ({at}). The next view verifies only what is added after it.",
    ),
    "ver.verify_all": ("すべてを検証し直す", "Verify everything again"),
    "page.nav": ("ページ送り", "Pages"),
    "page.newer": ("新しい記録へ", "Newer"),
    "page.older": ("古い記録へ", "Older"),
    "aud.title": ("監査担当: 監査ログ", "Auditor: audit log"),
    "aud.intro": (
        "スタッフの操作と API へのアクセスは、拒否されたものも含めてすべて記録されます。各記録は直前の記録のハッシュを含み、最新のハッシュはイベントログの署名付きツリーヘッドに組み込まれるため、記録の書き換えや削除は検証で必ず見つかります。",
        "Every staff action and API access, refused ones included, is recorded here. Each record includes the hash of the one before it and the newest hash is signed into the event log's tree head, so editing or deleting a record always shows in the verification.",
    ),
    "aud.records_heading": ("監査記録（新しい順）", "Audit records (newest first)"),
    "aud.caption": (
        "監査記録 {top} 番から {bottom} 番まで（全 {total} 件、新しい順）",
        "Audit records {top} down to {bottom} (of {total}, newest first)",
    ),
    "aud.intact": ("一致", "intact"),
    "aud.altered": ("書き換えあり", "altered"),
    "aud.empty": ("監査記録はまだありません。", "No audit record yet."),
    "aud.filter_heading": ("絞り込み", "Filter"),
    "aud.actor": ("操作者（ユーザー名・ID・peer:会員）", "Actor (username, id or peer:member)"),
    "aud.action": ("操作（先頭一致、例: POST /v1/entries）", "Action (starts with, e.g. POST /v1/entries)"),
    "aud.outcome": ("結果", "Outcome"),
    "aud.outcome_any": ("すべて", "any"),
    "aud.outcome_ok": ("成功 (ok)", "succeeded (ok)"),
    "aud.outcome_refused": ("拒否 (refused)", "refused"),
    "aud.outcome_failed": ("失敗 (failed)", "failed"),
    "aud.from": ("開始日時（{zone}）", "From ({zone})"),
    "aud.to": ("終了日時（{zone}、この時刻を含まない）", "To ({zone}, not included)"),
    "aud.size": ("1ページの件数", "Rows per page"),
    "aud.apply": ("絞り込む", "Apply"),
    "aud.clear": ("条件を消す", "Clear"),
    "aud.csv": ("この条件で CSV をダウンロード", "Download these records as CSV"),
    "aud.routine_folded": (
        "会員による定期的なログ取得（{count} 件）は 1 行にまとめて表示しています。",
        "Members' routine log polls ({count} records) are folded into one line each.",
    ),
    "aud.routine_shown": (
        "定期的なログ取得もすべて表示しています。",
        "Routine log polls are shown one by one.",
    ),
    "aud.show_routine": ("定期的なログ取得をすべて表示", "Show every routine poll"),
    "aud.fold_routine": ("定期的なログ取得をまとめる", "Fold routine polls"),
    "aud.folded": (
        "{actor} が {count} 回ログを取得（{first} から {last} まで）",
        "{actor} polled {count} times between {first} and {last}",
    ),
    "aud.matching": ("条件に合う記録 {count} 件（新しい順）", "{count} records match (newest first)"),
    "aud.newest": ("最新へ", "Newest"),
    "log.title": ("イベントログ（署名付き）", "Signed event log"),
    "log.intro": (
        "エントリーの登録・訂正・削除・期限切れと第三者提供は、すべてノードの鍵で署名されたイベントとして追記専用のログ（RFC 9162 のマークルツリー）に記録されます。イベントに顔データは含まれず、内容はソルト付きのコミットメントだけです。",
        "Every registration, correction, deletion and expiry of an entry, and every third-party provision, is an event signed with the node's key in an append-only log (an RFC 9162 Merkle tree). Events hold no face data, only salted commitments to their contents.",
    ),
    "log.head_heading": ("最新の署名付きツリーヘッド", "Latest signed tree head"),
    "log.tree_size": ("イベント数（ツリーサイズ）", "Events (tree size)"),
    "log.root": ("ルートハッシュ", "Root hash"),
    "log.signed_at": ("署名日時", "Signed at"),
    "log.audit_head": ("監査ログの最新ハッシュ", "Audit chain head"),
    "log.signatures": ("署名した鍵", "Signed by key"),
    "log.key": ("このノードの署名鍵: {keyid}。", "This node's signing key: {keyid}."),
    "log.key_listed": (
        "グループのマニフェストに登録された鍵です。",
        "It is the key the group's manifest lists for this node.",
    ),
    "log.key_not_listed": (
        "グループのマニフェストに登録された鍵と異なるため、参加事業者はこの署名を受け入れません。",
        "It is not the key the group's manifest lists for this node, so members will not accept its signatures.",
    ),
    "log.previous": (
        "一つ前のツリーヘッド（最新のヘッドとの整合性を確認）",
        "The tree head before it (checked for consistency with the latest)",
    ),
    "log.previous_none": ("一つ前のツリーヘッドはありません。", "No earlier tree head is kept."),
    "log.empty": ("イベントはまだ記録されていません。", "No event has been logged yet."),
    "log.events_heading": ("イベント（新しい順）", "Events (newest first)"),
    "log.caption": (
        "イベント {top} 番から {bottom} 番まで（全 {total} 件、新しい順）",
        "Events {top} down to {bottom} (of {total}, newest first)",
    ),
    "log.unreadable": ("読み取れません（書き換えの可能性）", "unreadable (possibly altered)"),
    "rep.title": ("透明性レポート", "Transparency report"),
    "rep.intro": (
        "期間ごとの登録・削除・照会・照合・第三者提供・本人からの請求・苦情の件数です。ノードの鍵で署名され、認定個人情報保護団体がグループ全体を集計します。個人を特定できる情報は含まれません。",
        "Counts per period of registrations, deletions, queries, matches, third-party provisions, data-subject requests and complaints. Signed with the node's key; the certified privacy organisation adds up the group's reports. No one can be identified from it.",
    ),
    "rep.period_heading": ("対象期間", "Period"),
    "rep.period": ("期間（年・四半期・月）", "Period (year, quarter or month)"),
    "rep.show": ("表示する", "Show"),
    "rep.signed": ("鍵 {keyid} で署名、集計日時 {at}。", "Signed with key {keyid}, counted at {at}."),
    "rep.download": ("署名付き JSON をダウンロード", "Download the signed JSON"),
    "rep.printable": ("印刷用ページ(A4)", "Printable page (A4)"),
    "rep.languages": (
        "以下は公表用のレポートです。画面上部で日本語と英語を切り替えられます。各項目の横にその定義があります。",
        "The report below is the published version; switch between Japanese and English at the top. Each figure has its definition beside it.",
    ),
    "req.title": (
        "本人からの請求（開示・訂正・消去・利用停止）",
        "Data-subject requests (disclosure, correction, deletion, cease of use)",
    ),
    "req.intro": (
        "法第33条から第35条に基づく請求を、受付から回答まで期限とともに管理します。期限を過ぎた請求には印が付きます。",
        "Requests under APPI Art. 33 to 35, tracked from the counter to the answer with their deadlines; overdue ones are flagged.",
    ),
    "req.read_only": (
        "閲覧のみ: あなたの役割では受付・検索・完了の操作はできません。",
        "Read only: your role may not record, search or close these.",
    ),
    "req.open_heading": ("対応中の請求", "Open requests"),
    "req.open_caption": (
        "対応中の請求 {count} 件（うち期限超過 {overdue} 件）、期限の近い順",
        "{count} open request(s), {overdue} overdue, nearest deadline first",
    ),
    "req.overdue": ("期限超過", "Overdue"),
    "req.days_left": ("残り {days} 日", "{days} day(s) left"),
    "req.not_searched_short": ("未検索", "Not yet"),
    "req.none_open": ("対応中の請求はありません。", "No open requests."),
    "req.record_heading": ("窓口で請求を受け付ける", "Record a request at the counter"),
    "req.record_help": (
        "本人確認書類の種類（番号は記録しません）と、検索に使う本人の顔写真を入力します。写真と顔データは暗号化して保存し、請求の完了時に消去します。写真が画面に表示されることはありません。",
        "Enter the kind of identity document seen (its number is never stored) and a photo of the person's face for the search. The photo and face data are stored encrypted and erased when the request closes; the photo is never shown on screen.",
    ),
    "req.kind": ("請求の種類", "Kind of request"),
    "req.identity_check": ("本人確認の方法", "Identity check"),
    "req.photo": ("本人の顔写真", "Photo of the person"),
    "req.record": ("受け付ける", "Record the request"),
    "req.recorded": (
        "請求を受け付けました。次に開示のための検索を実行してください。",
        "Recorded. Next, run the disclosure search.",
    ),
    "req.closed_heading": ("完了した請求", "Closed requests"),
    "req.closed_caption": (
        "完了した請求 {count} 件（新しい順）",
        "{count} closed request(s), most recent first",
    ),
    "req.none_closed": ("完了した請求はありません。", "No closed requests."),
    "req.detail_title": ("請求", "Request"),
    "req.back": ("請求の一覧へ", "All requests"),
    "req.facts_heading": ("受付内容", "The request"),
    "req.photo_held": ("顔写真と顔データ", "Photo and face data"),
    "req.photo_yes": ("暗号化して保存中（完了時に消去）", "Held encrypted (erased when the request closes)"),
    "req.photo_erased": (
        "保存していません（消去済み、または他の事業者から転送された請求）",
        "Not held (erased, or a request forwarded by a member)",
    ),
    "req.search_heading": ("開示のための検索", "Disclosure search"),
    "req.not_searched": ("まだ検索していません。", "Not searched yet."),
    "req.searched_at": ("{at} に検索しました。", "Searched at {at}."),
    "req.report_caption": (
        "本人について保有されているエントリー（{count} 件）",
        "Entries held about the person ({count})",
    ),
    "req.report_empty": (
        "このノードと回答した参加事業者のどこにも、本人に関するエントリーはありませんでした。",
        "No entry about the person was found on this node or at any member that answered.",
    ),
    "req.peers_caption": ("参加事業者の回答（{count} 事業者）", "Answers from members ({count})"),
    "req.peer_ok": ("回答あり", "Answered"),
    "req.peer_failed": ("回答なし", "No answer"),
    "req.peer_unknown": ("不明（回答なし）", "unknown (no answer)"),
    "req.search_incomplete": (
        "回答しなかった参加事業者があります。その事業者が保有するエントリーは結果に含まれていません。後で検索し直してください。",
        "Some members did not answer, so entries they hold are not in the result. Search again later.",
    ),
    "req.search_help": (
        "本人の顔でこのノードと参加事業者全体を検索します（利用目的: 本人からの請求）。結果は請求に保存されます。",
        "Searches this node and every member with the person's face (purpose: data-subject request). The result is saved with the request.",
    ),
    "req.search": ("検索する", "Search"),
    "req.searched": (
        "検索しました。結果を請求に保存しました。",
        "Searched; the result was saved with the request.",
    ),
    "req.close_heading": ("請求を完了する", "Close the request"),
    "req.close_help": (
        "拒否する場合は法令上の根拠を選んでください（拒否以外では根拠は付けられません）。法第33条第2項の根拠は開示請求にだけ使えます。「対応済み」は、消去・訂正が全参加事業者の署名付き受領証で確認できてから選べます。完了すると顔写真と顔データは消去されます。",
        'A refusal must name its legal ground, and only a refusal may have one; Art. 33-2 grounds apply to disclosure requests only. "Done" is accepted only once every member\'s signed receipt confirms the deletion or correction. Closing erases the photo and face data.',
    ),
    "req.outcome": ("結果", "Outcome"),
    "req.ground": ("拒否の根拠", "Ground for refusing"),
    "req.no_ground": ("なし（拒否ではない）", "None (not a refusal)"),
    "req.close": ("完了する", "Close the request"),
    "req.closed": (
        "請求を完了しました。顔写真と顔データは消去されました。",
        "Closed: the photo and face data were erased.",
    ),
    "req.outcome_heading": ("回答の結果", "How it ended"),
    "req.receipts_caption": (
        "参加事業者の署名付き受領証（{count} 件）",
        "Members' signed receipts ({count})",
    ),
    "cmp.title": ("苦情", "Complaints"),
    "cmp.intro": (
        "個人情報の取扱いに関する苦情（法第40条）を、受付から対応の記録まで管理します。受付から {days} 日を回答期限とし、過ぎたものには印が付きます。",
        "Complaints about how personal data is handled (APPI Art. 40), from intake to the record of what was done. Each is due {days} days after it was received; overdue ones are flagged.",
    ),
    "cmp.open_heading": ("対応中の苦情", "Open complaints"),
    "cmp.open_caption": (
        "対応中の苦情 {count} 件（うち期限超過 {overdue} 件）、古い順",
        "{count} open complaint(s), {overdue} overdue, oldest first",
    ),
    "cmp.none_open": ("対応中の苦情はありません。", "No open complaints."),
    "cmp.close_heading": ("苦情を完了する", "Close a complaint"),
    "cmp.outcome": ("結果", "Outcome"),
    "cmp.note": (
        "対応の記録（何をしたか、または対応しない理由。500 文字まで）",
        "Note: what was done, or why nothing was (up to 500 characters)",
    ),
    "cmp.close": ("完了する", "Close the complaint"),
    "cmp.closed": ("苦情を完了しました。", "The complaint was closed."),
    "cmp.closed_heading": ("完了した苦情", "Closed complaints"),
    "cmp.closed_caption": (
        "完了した苦情 {count} 件（新しい順）",
        "{count} closed complaint(s), most recent first",
    ),
    "cmp.none_closed": ("完了した苦情はありません。", "No closed complaints."),
    "cmp.not_referred": ("回付していません", "Not referred"),
    "cmp.referred_on": ("{when} に事業者へ回付", "Referred to the member on {when}"),
    "cmp.answer_by": ("回答期限 {when}", "Answer due by {when}"),
    "cmp.delivered_at": ("{when} に事業者が受領", "Received by the member on {when}"),
    "cmp.not_delivered": (
        "まだ届いていません（送信 {attempts} 回、自動で再送します）",
        "Not yet delivered ({attempts} attempt(s); retried automatically)",
    ),
    "cmp.member_answered": ("事業者の回答（{when}）:", "The member answered on {when}:"),
    "cmp.refer_heading": ("事業者へ回付する", "Refer to the member"),
    "cmp.refer_help": (
        "苦情の内容（または下に書く要約）を、団体の鍵で署名して事業者へ送ります。申出人の連絡先は送りません。",
        "Sends the complaint's text (or the summary written below) to the member, signed with the organisation's key. The complainant's contact is never sent.",
    ),
    "cmp.refer_days": ("回答期限（日数）", "Answer within (days)"),
    "cmp.refer_summary": (
        "要約（空欄なら申出人の文面をそのまま送ります。2000 文字まで）",
        "Summary (left empty, the complainant's own words are sent; up to 2000 characters)",
    ),
    "cmp.refer": ("署名して回付する", "Sign and refer"),
    "cmp.deliver_now": ("今すぐ再送する", "Send again now"),
    "cmp.no_referral_key": (
        "このサーバーは団体のオンライン鍵（--witness-key）を持たないため、苦情を事業者へ回付できません。",
        "This server holds no online key of the organisation (--witness-key), so it cannot refer complaints to members.",
    ),
    "cmp.referred": (
        "苦情を事業者へ回付し、事業者が受領しました。",
        "The complaint was referred and the member received it.",
    ),
    "cmp.referred_pending": (
        "苦情を回付しましたが、まだ事業者に届いていません。自動で再送します。",
        "The complaint was referred but has not reached the member yet; it is retried automatically.",
    ),
    "cmp.answer_owed": ("団体へ未回答", "Not yet answered"),
    "cmp.answer_help": (
        "認定個人情報保護団体から回付された苦情です。{when} までに回答してください。回答はこのノードの鍵で署名して団体へ送られ、苦情は完了します。",
        "Referred by the organisation: answer by {when}. The answer is signed with this node's key and sent to the organisation, and the complaint is closed.",
    ),
    "cmp.answer_text": (
        "回答（何をしたか、または理由がないと判断した理由。2000 文字まで）",
        "Answer: what was done, or why the complaint is unfounded (up to 2000 characters)",
    ),
    "cmp.answer": ("署名して団体へ回答する", "Sign and answer the organisation"),
    "cmp.answered": (
        "団体へ回答し、団体が受領しました。",
        "The answer was sent and the organisation received it.",
    ),
    "cmp.answered_pending": (
        "回答を記録しましたが、まだ団体に届いていません。自動で再送します。",
        "The answer is recorded but has not reached the organisation yet; it is retried automatically.",
    ),
    "cmp.answer_sent": ("回答が団体に届きました。", "The answer reached the organisation."),
    "cmp.answer_delivered_at": ("{when} に団体が受領", "Received by the organisation on {when}"),
    "cmp.answer_not_delivered": (
        "まだ団体に届いていません（送信 {attempts} 回、自動で再送します）",
        "Not yet delivered to the organisation ({attempts} attempt(s); retried automatically)",
    ),
    "col.seq": ("番号", "No."),
    "col.actor": ("実行者", "Actor"),
    "col.action": ("操作", "Action"),
    "col.target": ("対象", "Target"),
    "col.outcome": ("結果", "Outcome"),
    "col.hash": ("記録のハッシュ", "Record hash"),
    "col.intact": ("ハッシュ照合", "Hash check"),
    "col.event": ("イベント", "Event"),
    "col.subject": ("エントリー・記録", "Entry or record"),
    "col.detail": ("理由・法的根拠", "Reason or legal basis"),
    "col.leaf_hash": ("リーフのハッシュ", "Leaf hash"),
    "col.request": ("請求", "Request"),
    "col.request_kind": ("種類", "Kind"),
    "col.received": ("受付日時", "Received"),
    "col.deadline": ("回答期限", "Deadline"),
    "col.time_left": ("期限まで", "Time left"),
    "col.searched": ("検索", "Searched"),
    "col.closed_at": ("完了日時", "Closed"),
    "col.ground": ("拒否の根拠", "Refusal ground"),
    "col.case_status": ("状況", "Status"),
    "col.recorded_by": ("受付者", "Recorded by"),
    "col.registered": ("登録日時", "Registered"),
    "col.answer": ("回答", "Answer"),
    "col.found": ("該当件数", "Entries found"),
    "col.receipt_action": ("処理", "Action"),
    "col.applied_at": ("適用日時", "Applied"),
    "col.signed_by": ("署名した鍵", "Signed by key"),
    "col.complaint": ("苦情", "Complaint"),
    "col.channel": ("受付経路", "Channel"),
    "col.summary": ("内容", "Summary"),
    "col.contact": ("連絡先", "Contact"),
    "col.note": ("対応の記録", "Note"),
    # the certified organisation's console (node/org/console.py)
    "org.title": ("認定個人情報保護団体 管理画面", "Organisation console"),
    "org.login_hint": (
        "認定個人情報保護団体の事務局・鍵管理者・監査担当・管理者は、団体のアカウントでログインします。",
        "The organisation's secretariat, key holders, auditors and admins sign in with their organisation account.",
    ),
    "nav.org_members": ("加盟事業者", "Members"),
    "nav.org_drafts": ("マニフェストの改訂と署名", "Manifest drafts and signing"),
    "nav.org_forks": ("ログ分岐の報告", "Fork reports"),
    "nav.org_report": ("グループの透明性レポート", "Group report"),
    "org.report_title": ("グループの透明性レポート {period}", "Group transparency report {period}"),
    "org.report_help": (
        "参加事業者が署名した各期間の透明性レポートを受け取り、表示のたびに検証し直して合計します。報告のない参加事業者は一覧に示します。",
        "The members' signed transparency reports for a period, verified again every time they are shown and summed; members that have not reported are listed.",
    ),
    "org.report_period": ("期間（例: 2026-Q4、2026-11、2026）", "Period (e.g. 2026-Q4, 2026-11, 2026)"),
    "org.report_show": ("表示", "Show"),
    "org.report_received": ("受け取った報告", "Reports received"),
    "org.report_generated": ("作成日時", "Generated"),
    "org.report_version": ("マニフェストの版", "Manifest version"),
    "org.report_none": ("この期間の報告はまだありません。", "No report for this period yet."),
    "org.report_missing": ("報告のない参加事業者", "Members whose report is missing"),
    "org.report_all_in": ("全ての参加事業者が報告しています。", "Every member has reported."),
    "org.report_totals": ("グループの合計", "Group totals"),
    "org.report_upload_heading": ("参加事業者の報告を受け付ける", "Take a member's report"),
    "org.report_upload_help": (
        "参加事業者が watchnet report --sign で作成した署名付きのファイルです。署名と期間を確認してから保管します。",
        "The signed file a member made with watchnet report --sign; its signature and period are checked before it is kept.",
    ),
    "org.report_file": ("報告ファイル", "Report file"),
    "org.report_upload": ("受け付ける", "Take the report"),
    "org.report_added": ("報告を受け付けました。", "The report was taken."),
    "org.report_publish_heading": ("公開", "Publication"),
    "org.report_publish": ("この期間のグループレポートを公開する", "Publish this period's group report"),
    "org.report_published": ("公開しました。", "Published."),
    "org.report_published_note": ("{who} が {time} に公開しました。", "Published by {who} at {time}."),
    "org.report_not_published": ("まだ公開していません。", "Not published yet."),
    "org.forks_title": ("ログ分岐の報告", "Fork reports"),
    "org.forks_help": (
        "加盟事業者のログが同じ大きさで異なる内容に署名されたという報告です。表示のたびに、適用中の版の鍵で改めて検証します。",
        "Reports that a member signed two different logs of one size. Each is verified again, against the version in force, every time this page is shown.",
    ),
    "org.no_forks": ("分岐の報告はありません。", "No fork reports."),
    "org.fork_report": ("報告 {id}", "Report {id}"),
    "org.fork_received": ("受付: {time}、報告者: {reporter}", "Received {time}, reporter: {reporter}"),
    "org.fork_anonymous": ("匿名", "anonymous"),
    "org.fork_check_ok": ("いま再検証: 分岐を証明しています", "Verified again now: it proves a fork"),
    "org.fork_check_failed": ("いま再検証: 証明になっていません", "Verified again now: it proves nothing"),
    "org.fork_head": ("署名されたツリーヘッド {n}", "Signed tree head {n}"),
    "org.fork_size": ("大きさ", "Tree size"),
    "org.fork_root": ("ルート", "Root"),
    "org.fork_time": ("時刻", "Time"),
    "org.fork_signed_by": ("署名した鍵", "Signed by key"),
    "org.fork_decisions": ("判断の記録", "Decisions"),
    "org.fork_no_decision": ("まだ判断していません。", "No decision yet."),
    "org.fork_decide": ("判断を記録する", "Record the decision"),
    "org.fork_decision": ("判断", "Decision"),
    "org.fork_note": (
        "理由（判断の記録に残ります。500 文字まで）",
        "Why (kept in the decision log; up to 500 characters)",
    ),
    "org.fork_decided": ("判断を記録しました。", "The decision was recorded."),
    "org.in_force": ("適用中のマニフェスト", "Manifest in force"),
    "org.version": ("版", "Version"),
    "org.expires": ("有効期限", "Expires"),
    "org.expires_in": ("あと {days} 日", "in {days} days"),
    "org.expiring": (
        "有効期限が近づいています。期限までに更新版を作成し、署名を集めて公開してください。期限を過ぎると、各加盟事業者は照会を停止します。",
        "The manifest expires soon. Draft a renewal, collect the signatures and publish it before then: past its expiry every member stops querying.",
    ),
    "org.expired": ("有効期限切れ", "Expired"),
    "org.members_title": ("加盟事業者", "Members"),
    "org.rules_link": (
        "公開中の個人情報保護指針（適用中の版から作成）",
        "The published guideline (made from the version in force)",
    ),
    "org.notice_link": ("共同利用の公表事項", "The joint-use notice"),
    "org.members_help": (
        "適用中の版に載っている事業者ごとに、参加状況、各ノードが使っている版、団体からの到達性、分岐の報告、苦情を示します。",
        "Each member in the version in force: its status, the version its node runs, whether the organisation reaches it, fork reports and complaints.",
    ),
    "org.members_caption": ("加盟事業者の一覧", "Members of the group"),
    "org.check_now": ("今すぐ各ノードに確認する", "Ask every node now"),
    "org.members_checked": (
        "各ノードに使用中の版を確認しました。",
        "Every node was asked which version it runs.",
    ),
    "org.last_pass": ("最後の確認: {time}", "Last asked: {time}"),
    "org.never_asked": (
        "この起動後、まだ各ノードに確認していません。",
        "The nodes have not been asked since this server started.",
    ),
    "org.open_draft_note": (
        "改訂案（第 {version} 版）が署名待ちです。",
        "A draft (version {version}) is waiting for signatures.",
    ),
    "org.runs_version": ("第 {version} 版を使用", "Runs version {version}"),
    "org.behind": ("（適用中の版より古い）", "(behind the version in force)"),
    "org.not_asked": ("未確認", "Not asked yet"),
    "org.unreachable": ("応答なし", "Unreachable"),
    "org.http_error": ("エラー応答（{status}）", "Answered with an error ({status})"),
    "org.refused_answer": ("この団体のマニフェストではない応答", "Answered with no manifest of this group"),
    "org.last_ok": ("最後に応答: {time}", "Last answered: {time}"),
    "org.fetch_seen": (
        "{time} に取得（第 {version} 版、起動後 {count} 回）",
        "Fetched at {time} (version {version}, {count} times since start)",
    ),
    "org.fetch_none": (
        "起動後、このノードのアドレスからの取得はありません。",
        "No fetch from its address since this server started.",
    ),
    "org.fetch_hostname": (
        "接続先がホスト名のため、取得を事業者ごとに区別できません（取得は認証なしで、送信元アドレスのみ記録）。",
        "Its endpoint is a host name, so its fetches cannot be told apart (fetches carry no credentials; only the source address is recorded).",
    ),
    "org.fetch_shared": (
        "送信元 {source} は {count} 事業者の接続先と同じため、どの事業者の取得か区別できません。最後の取得: {time}",
        "Source {source} is the endpoint address of {count} members, so its fetches cannot be told apart. Last fetch: {time}",
    ),
    "org.fetch_shared_none": (
        "送信元 {source} は {count} 事業者の接続先と同じです。起動後の取得はありません。",
        "Source {source} is the endpoint address of {count} members; no fetch from it since this server started.",
    ),
    "org.forks": ("分岐の報告 {count} 件", "{count} fork report(s)"),
    "org.forks_none": ("なし", "None"),
    "org.owes": ("未送付 {count} 件", "{count} owed"),
    "org.owes_to": (
        "{owner} へ {count} 件（{owner} の報告、{time}）",
        "{count} to {owner} (its report of {time})",
    ),
    "org.owes_none": (
        "なし（{reporters} 事業者の署名付き報告による）",
        "None (from {reporters} members' signed reports)",
    ),
    "org.owes_unknown": (
        "他の参加事業者の報告がまだありません",
        "No other member's report yet",
    ),
    "org.cleared": ("解消記録を公開済み", "Clearance published"),
    "org.complaints": ("未完了 {open} 件・完了 {closed} 件", "{open} open, {closed} closed"),
    "col.org_member": ("事業者", "Member"),
    "col.referral": ("回付と回答", "Referral and answer"),
    "col.org_status": ("参加状況", "Status"),
    "col.org_runs": ("使用中の版（団体から確認）", "Version it runs (asked)"),
    "col.org_fetch": ("マニフェストの取得", "Manifest fetches"),
    "col.org_forks": ("分岐の報告", "Fork reports"),
    "col.org_owes": ("他事業者への未送付の受領証", "Receipts owed to others"),
    "col.org_complaints": ("苦情", "Complaints"),
    "org.drafts_title": ("マニフェストの改訂と署名", "Manifest drafts and signing"),
    "org.drafts_help": (
        "加盟・参加停止・再開・脱退は、適用中の版を直接書き換えず、次の版の改訂案として作成します。鍵管理者は各自の端末で署名し、署名ファイルをここにアップロードします。",
        "Admission, suspension, reinstatement and removal never edit the version in force: each starts as a draft of the next version. Key holders sign it on their own machines and upload the signed file here.",
    ),
    "org.admit_heading": ("新しい事業者の加盟案を作る", "Draft the admission of a new member"),
    "org.admit_help": (
        "加盟する事業者のノードの公開鍵と接続先を入力します（そのノードの watchnet node info で確認できます）。",
        "Enter the new member node's public keys and endpoint (its operator reads them with watchnet node info).",
    ),
    "org.status_heading": ("参加状況の変更案を作る", "Draft a change of a member's status"),
    "org.renew_heading": ("有効期限の更新案を作る", "Draft a renewal"),
    "org.renew_help": (
        "適用中の版と同じ内容で、有効期限だけを今から指定日数後にした次の版を作ります。",
        "The next version with the same contents and a new expiry, the given number of days from now.",
    ),
    "org.field_days": ("有効日数（今日から）", "Valid for (days from today)"),
    "org.field_node_id": ("ノード ID", "Node id"),
    "org.field_name_ja": ("名称（日本語）", "Name (Japanese)"),
    "org.field_name_en": ("名称（英語）", "Name (English)"),
    "org.field_signing_key": ("署名用公開鍵（Ed25519）", "Signing public key (Ed25519)"),
    "org.field_encryption_key": ("暗号化用公開鍵（X25519）", "Encryption public key (X25519)"),
    "org.field_endpoint": ("接続先 URL", "Endpoint URL"),
    "org.field_action": ("変更", "Change"),
    "org.field_member": ("事業者", "Member"),
    "org.draft_submit": ("改訂案を作成する", "Create the draft"),
    "org.draft_open_note": (
        "改訂案（第 {version} 版）が未完了です。公開するか取り下げるまで、次の改訂案は作成できません。",
        "The draft of version {version} is open: publish or withdraw it before drafting another.",
    ),
    "org.drafts_caption": ("改訂案の一覧（新しい順）", "Drafts, newest first"),
    "org.no_drafts": ("改訂案はまだありません。", "No drafts yet."),
    "col.org_version": ("版", "Version"),
    "col.org_change": ("変更", "Change"),
    "col.org_state": ("状態", "State"),
    "col.org_signatures": ("署名", "Signatures"),
    "col.org_drafted": ("作成", "Drafted"),
    "org.k_of_n": ("{k} / {n}（必要数 {threshold}）", "{k} of {n} (threshold {threshold})"),
    "org.drafted_by": ("{who}（{time}）", "{who} at {time}"),
    "org.draft_title": ("改訂案: 第 {version} 版", "Draft: version {version}"),
    "org.draft_base": ("第 {base} 版（適用中）からの改訂", "Drafted on version {base} (in force)"),
    "org.draft_base_stale": (
        "第 {base} 版を元にした改訂案ですが、現在は第 {current} 版が適用中です。取り下げて作り直してください。",
        "Drafted on version {base}, but version {current} is in force now: withdraw it and draft again.",
    ),
    "org.changes_heading": ("適用中の版からの変更点", "Changes against the version in force"),
    "org.no_changes": ("変更点はありません。", "No changes."),
    "org.signatures_heading": ("署名", "Signatures"),
    "org.signatures_help": (
        "鍵管理者は下のファイルをダウンロードし、自分の端末で watchnet gov sign ファイル --key 自分の鍵 を実行して、署名済みのファイルをアップロードします。署名鍵はこのサーバーに置きません。",
        "Key holders download the file below, run watchnet gov sign FILE --key THEIR-KEY on their own machine and upload the signed file. No signing key is ever put on this server.",
    ),
    "org.collected": (
        "集まった署名: {k} / {n}（必要数 {threshold}）",
        "Signatures collected: {k} of {n} (threshold {threshold})",
    ),
    "org.collected_previous": (
        "適用中の版の鍵による署名: {k} / {n}（必要数 {threshold}）",
        "By the keys of the version in force: {k} of {n} (threshold {threshold})",
    ),
    "col.org_key": ("鍵 ID", "Key id"),
    "col.org_signed": ("署名", "Signed"),
    "col.org_uploaded_by": ("アップロードした人", "Uploaded by"),
    "org.signed_yes": ("署名済み", "Signed"),
    "org.signed_no": ("未署名", "Not yet"),
    "org.signed_invalid": ("無効な署名", "Invalid signature"),
    "org.download": ("署名用ファイルをダウンロード", "Download the file to sign"),
    "org.upload_label": ("署名済みファイル", "Signed file"),
    "org.upload": ("署名をアップロードする", "Upload the signature"),
    "org.signature_added": ("署名を受け付けました。", "The signature was added."),
    "org.signature_already": (
        "そのファイルの署名はすでに受け付けています。",
        "The signatures in that file were already collected.",
    ),
    "org.publish_heading": ("公開", "Publish"),
    "org.publish_help": (
        "必要数の署名がそろい、各ノードと同じ検証（版の単調増加、適用中の版の鍵と新しい版の鍵の両方の必要数、有効期限）に通ったときだけ公開できます。",
        "Publishing is possible only when the signatures are in and the draft passes the checks every node applies (a newer version, the threshold of the version in force's keys and of its own, not expired).",
    ),
    "org.publish": ("この版を公開する", "Publish this version"),
    "org.not_publishable": ("まだ公開できません:", "Not publishable yet:"),
    "org.published": (
        "公開しました。各ノードは次のマニフェスト確認でこの版を取得します。",
        "Published. Every node picks this version up at its next manifest fetch.",
    ),
    "org.published_note": ("{who} が {time} に公開しました。", "Published by {who} at {time}."),
    "org.withdrawn_note": ("{who} が {time} に取り下げました。", "Withdrawn by {who} at {time}."),
    "org.withdraw": ("この改訂案を取り下げる", "Withdraw this draft"),
    "org.withdrawn": ("改訂案を取り下げました。", "The draft was withdrawn."),
    "org.draft_created": (
        "改訂案を作成しました。鍵管理者の署名を集めてください。",
        "The draft was created. Now collect the key holders' signatures.",
    ),
    "change.member-added": (
        "事業者の加盟: {name}（{subject}、接続先 {after}）",
        "Member added: {name} ({subject}, endpoint {after})",
    ),
    "change.member-suspended": (
        "事業者の参加停止: {name}（{subject}）",
        "Member suspended: {name} ({subject})",
    ),
    "change.member-reinstated": (
        "事業者の参加再開: {name}（{subject}）",
        "Member reinstated: {name} ({subject})",
    ),
    "change.member-removed": ("事業者の脱退: {name}（{subject}）", "Member removed: {name} ({subject})"),
    "change.member-endpoint": (
        "接続先の変更: {name}（{subject}）{before} → {after}",
        "Endpoint changed: {name} ({subject}) {before} → {after}",
    ),
    "change.member-keys": (
        "公開鍵の変更: {name}（{subject}）{before} → {after}",
        "Keys changed: {name} ({subject}) {before} → {after}",
    ),
    "change.member-name": (
        "名称の変更: {subject} {before} → {after}",
        "Name changed: {subject} {before} → {after}",
    ),
    "change.member-private-only": (
        "秘匿照会のみの設定の変更: {name}（{subject}）{before} → {after}",
        "Private-only changed: {name} ({subject}) {before} → {after}",
    ),
    "change.purpose-added": ("利用目的の追加: {name}（{subject}）", "Purpose added: {name} ({subject})"),
    "change.purpose-removed": ("利用目的の削除: {name}（{subject}）", "Purpose removed: {name} ({subject})"),
    "change.item-added": (
        "共同利用する項目の追加: {name}（{subject}）",
        "Shared item added: {name} ({subject})",
    ),
    "change.item-removed": (
        "共同利用する項目の削除: {name}（{subject}）",
        "Shared item removed: {name} ({subject})",
    ),
    "change.signer-added": ("署名鍵の追加: {subject}", "Signing key added: {subject}"),
    "change.signer-removed": ("署名鍵の削除: {subject}", "Signing key removed: {subject}"),
    "change.threshold": (
        "署名の必要数の変更: {before} → {after}",
        "Signature threshold changed: {before} → {after}",
    ),
    "change.retention-shortened": (
        "最長保存期間の短縮: {before} 日 → {after} 日",
        "Retention shortened: {before} → {after} days",
    ),
    "change.retention-lengthened": (
        "最長保存期間の延長: {before} 日 → {after} 日",
        "Retention lengthened: {before} → {after} days",
    ),
    "change.match-threshold": (
        "照合のしきい値の変更: {before} → {after}",
        "Match threshold changed: {before} → {after}",
    ),
    "change.category-added": ("事案の種別の追加: {subject}", "Incident category added: {subject}"),
    "change.category-removed": ("事案の種別の削除: {subject}", "Incident category removed: {subject}"),
    "change.evidence-added": ("必要な証跡の追加: {subject}", "Required evidence added: {subject}"),
    "change.evidence-removed": ("必要な証跡の削除: {subject}", "Required evidence removed: {subject}"),
    "change.model": ("顔認識モデルの変更: {before} → {after}", "Face model changed: {before} → {after}"),
    "change.expires": ("有効期限の変更: {before} → {after}", "Expiry changed: {before} → {after}"),
    "change.administrator": ("管理責任者の変更: {name}", "Accountable administrator changed: {name}"),
    "change.statement": ("共同利用の記載の変更", "Joint-use statement changed"),
    "change.other": ("その他の変更: {subject}", "Other change: {subject}"),
}
"""Every text of the console: key -> (Japanese, English)."""


FINDINGS: dict[str, str] = {
    # registration rules (governance.rules)
    "category_not_in_group": "区分「{category}」はグループの区分（{categories}）にありません",
    "category_not_registered_here": "区分「{category}」はこの事業者が登録する区分（{categories}）にありません",
    "evidence_not_accepted": "証跡の種類「{evidence}」は認められていません（認められる種類: {accepted}）",
    "retention_too_long": "保存期間 {days:.1f} 日は上限の {limit} 日を超えています",
    "already_expired": "保存期間がすでに過ぎています",
    "incident_after_registration": "事案の日付 {date} が登録日より後になっています",
    "model_not_pinned": "顔認識モデル {model} はグループが定めたモデル {pinned} ではありません",
    "unknown_entry_fields": "登録項目にない欄があります（{fields}）。自由記述は認められません",
    # face quality (node.face.pipeline)
    "detection_score_low": "顔の検出スコア {score:.2f} が基準 {limit:.2f} を下回っています",
    "face_too_small": "顔の幅が {pixels} ピクセルです。{limit} ピクセル以上必要です",
    "head_turned": "顔が {degrees:.0f} 度横を向いています（{limit:.0f} 度まで）",
    "blurred": "画像がぼやけています（鮮明さ {sharpness:.0f}、基準 {limit:.0f}）",
    # log and audit verification (node.reporting.auditor)
    "head_signed": "サイズ {size} のツリーヘッドにこの事業者の署名があります",
    "head_signature_bad": "ツリーヘッドの署名: {error}",
    "event_bad": "イベント {index}: {error}",
    "event_wrong_owner": "イベント {index} の所有者が {owner} になっています",
    "event_unknown_fields": "イベント {index} に想定外の項目があります",
    "events_missing": "署名されたヘッドの {size} 件のうち {read} 件しか読めませんでした",
    "root_mismatch": "イベントから計算したハッシュが署名されたルートと一致しません",
    "root_matches": "署名された {size} 件のイベントが署名されたルートに一致します",
    "log_shrank": "ログが {old} 件から {new} 件に減っています",
    "log_extends": "ログは以前に確認したサイズ {size} のヘッドを引き継いでいます",
    "consistency_failed": "以前のサイズ {size} のヘッドとの整合性: {error}",
    "audit_chain_intact": "監査記録 {records} 件の連鎖は改ざんされていません",
    "audit_chain_broken": "監査記録の連鎖: {error}",
    "audit_chain_resumed": "以前に確認した記録 {seq} の後の監査記録 {new} 件を確認しました",
    "audit_chain_rewritten": "監査記録の連鎖: 以前に確認した記録が書き換えられたか、なくなっています（{error}）",
    "log_resumed": "以前に確認した {size} 件の後の新しいイベント {new} 件を確認しました",
    "inclusion_verified_new": "新しいイベント {count} 件の包含証明を確認しました",
    "state_bad": "状態ファイル {path}: {error}",
    "state_other_log": "状態ファイルは {saved} のログ（鍵 {saved_key}）のもので、{node} のログ（鍵 {key}）のものではありません",
    "audit_head_signed": "署名されたツリーヘッドが監査記録の連鎖の一件を指しています",
    "audit_head_missing": "ツリーヘッドに署名された監査記録が監査ログにありません",
    "checkpoint_bad": "{source} が持つチェックポイント: {error}",
    "history_differs": "{node} のログが {holders} の持つ履歴と異なります（{error}）",
    "manifest_bad": "この事業者のマニフェスト: {error}",
    "manifest_pinned": "{group} のマニフェスト第 {version} 版に、固定したルート鍵の必要数の署名があります",
    "manifest_self_signed": (
        "{group} のマニフェスト第 {version} 版に、"
        "それ自身の鍵の必要数の署名があります（--root-keyid で認定個人情報保護団体の鍵を固定してください）"
    ),
    "key_not_pinned": "この事業者が示す署名鍵が固定した鍵と異なります",
    "key_in_manifest_pinned": "この事業者の鍵はマニフェストの鍵であり、固定した鍵です",
    "key_in_manifest": "この事業者の鍵はマニフェストの鍵です（--signing-key で固定してください）",
    "key_not_in_manifest": "鍵はこの事業者から取得しました。マニフェスト第 {version} 版が {node} に定める鍵ではないため、立会人はこのログを保証できません",
    "cosignatures_impossible": "{node} はマニフェスト第 {version} 版が定める鍵で署名していないため、必要な立会人の連署 {required} 件はどれも数えられません",
    "witness_unreachable": "立会人 {witnesses} からこのログのチェックポイントを得られませんでした",
    "too_few_cosignatures": "立会人の連署: {error}",
    "cosigned": "ログは立会人 {witnesses} が連署した履歴です（必要 {required} 件のうち {count} 件）",
    "inclusion_failed": "イベント {index} の包含証明: {error}",
    "inclusion_verified": "{size} 件すべてのイベントの包含証明を確認しました",
    "stored_head_bad": "保存されたサイズ {size} のツリーヘッド: {error}",
    "stored_event_missing": "イベント {index} が保存されたログにありません（{found} がありました）",
    "stored_leaf_mismatch": "イベント {index}: 保存されたハッシュが保存されたイベントと一致しません",
    "earlier_head_bad": "以前のサイズ {size} のツリーヘッド: {error}",
    "earlier_head_unverified": "以前のサイズ {size} のツリーヘッドは前回までに確認した範囲より古いため、すべてを検証し直してください",
    "log_empty": "イベントログは空です",
}
"""Each ``Finding`` code's sentence in Japanese, filled from its values; English is the finding itself."""

FINDING_VALUE_LABELS = {
    "category": "category",
    "categories": "category",
    "evidence": "evidence",
    "accepted": "evidence",
}
"""Values that are themselves codes, and the kind of label that names them."""

REFUSED = ("要求は拒否されました", "The request was refused")


class Translator:
    """The texts of one language: ``t(key, **values)`` for messages, ``label(kind, code)`` for codes."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self._index = 0 if lang == "ja" else 1

    def t(self, key: str, **values: object) -> str:
        text = MESSAGES[key][self._index]
        return text.format(**values) if values else text

    def label(self, kind: str, code: str) -> str:
        pair = LABELS[kind].get(code)
        if pair is None:
            return REFUSED[self._index] if kind == "error" else code
        return pair[self._index]

    def finding(self, text: str) -> str:
        """A rule violation, quality failure or audit check in this language (its code and values)."""
        if self._index == 1 or not isinstance(text, Finding) or text.code not in FINDINGS:
            return text
        values = {name: self._value(name, value) for name, value in text.values.items()}
        if "error" in text.values:
            code = str(text.values["error"])
            values["error"] = LABELS["error"][code][self._index] if code in LABELS["error"] else code
        return FINDINGS[text.code].format(**values)

    def _value(self, name: str, value: Value) -> Value:
        kind = FINDING_VALUE_LABELS.get(name)
        items = value if isinstance(value, tuple) else None
        if kind is not None:
            shown = [self.label(kind, v) for v in (items or (str(value),))]
            return self.join(shown) if items is not None else shown[0]
        return self.join(list(items)) if items is not None else value

    def join(self, items: list[str]) -> str:
        return ("、" if self._index == 0 else ", ").join(items) or "—"
