"""When a node may provide watchlist data to a third party (APPI Art. 27-1), and to whom.

Outside joint use, personal data leaves a business only under an exception of Art. 27-1. For a
watchlist the realistic ones are a request the law backs (an inquiry under the Code of Criminal
Procedure Art. 197-2, a warrant) and an urgent need to protect life, body or property when the
person's consent cannot be obtained. A provision without one of these bases is refused.
"""

from __future__ import annotations

from protocol.errors import PolicyError

__all__ = ["ITEMS", "LEGAL_BASES", "REQUESTER_KINDS", "NoLegalBasis", "require_legal_basis"]

LEGAL_BASES: dict[str, dict[str, str]] = {
    "ccp-197-2-inquiry": {
        "article": "法第27条第1項第1号 / 刑事訴訟法第197条第2項",
        "ja": "捜査関係事項照会（法令に基づく場合）",
        "en": "inquiry by an investigating authority under the Code of Criminal Procedure Art. 197-2 (required by law)",
    },
    "warrant": {
        "article": "法第27条第1項第1号 / 刑事訴訟法第218条",
        "ja": "令状による差押え等（法令に基づく場合）",
        "en": "seizure or production under a court warrant (required by law)",
    },
    "protection-of-life-body-property": {
        "article": "法第27条第1項第2号",
        "ja": "人の生命、身体又は財産の保護のために必要があり、本人の同意を得ることが困難であるとき",
        "en": "necessary to protect a person's life, body or property, and the person's consent is hard to obtain",
    },
    "cooperation-with-public-body": {
        "article": "法第27条第1項第4号",
        "ja": "国の機関等が法令の定める事務を遂行することに協力する必要があるとき",
        "en": "cooperation with a public body carrying out duties set by law, where consent would impede them",
    },
}
REQUESTER_KINDS = frozenset({"police", "prosecutor", "court", "public-body", "emergency-services"})
ITEMS = frozenset(
    {"incident-category", "evidence-kind", "evidence-reference", "registration-period", "face-image"}
)
"""What can be handed over: entry metadata, and the registered face crop only when listed."""


class NoLegalBasis(PolicyError):
    code = "no_legal_basis"


def require_legal_basis(legal_basis: str, requester_kind: str, items: list[str]) -> None:
    """Raise ``NoLegalBasis`` unless the provision names a known basis, requester kind and items."""
    if legal_basis not in LEGAL_BASES:
        raise NoLegalBasis(
            f"{legal_basis!r:.48} is not a legal basis for providing data to a third party "
            f"(Art. 27-1); one of {sorted(LEGAL_BASES)}"
        )
    if requester_kind not in REQUESTER_KINDS:
        raise NoLegalBasis(f"requester kind {requester_kind!r:.32}: one of {sorted(REQUESTER_KINDS)}")
    unknown = sorted(set(items) - ITEMS)
    if not items or unknown:
        raise NoLegalBasis(f"items {unknown or '[]'}: name what is provided, from {sorted(ITEMS)}")
