"""Data-subject requests (APPI Art. 33-35): what can be asked, how a request may end, on which ground.

A person may ask a member for disclosure of the data held about them (Art. 33), correction,
addition or deletion of data that is not true (Art. 34), or that its use stop (Art. 35). The
business must answer without delay; where the law allows it to refuse, the refusal must name its
ground, which is recorded and counted. These are the codes a node stores and reports.
"""

from __future__ import annotations

import enum
from datetime import timedelta

from protocol.errors import PolicyError

__all__ = [
    "COMPLAINT_ANSWER_OUTCOMES",
    "COMPLAINT_CATEGORIES",
    "COMPLAINT_CHANNELS",
    "COMPLAINT_OUTCOMES",
    "DEFAULT_DEADLINE",
    "IDENTITY_CHECKS",
    "IDENTITY_CHECK_ORDER",
    "REFERRAL_DAYS",
    "RefusalGround",
    "RequestKind",
    "RequestOutcome",
    "RequestRefused",
    "check_outcome",
]

DEFAULT_DEADLINE = timedelta(days=14)
"""The law says "without delay"; a node tracks this as its own outer limit unless staff set another."""

IDENTITY_CHECK_ORDER = (
    "drivers-licence",
    "my-number-card",
    "health-insurance-card",
    "residence-card",
    "passport",
    "agent-with-power-of-attorney",
    "legal-representative",
)
"""How staff confirmed who is asking (the document kind only; its number is never stored), the
documents people most often carry first: a counter form lists them in this order."""
IDENTITY_CHECKS = frozenset(IDENTITY_CHECK_ORDER)


class RequestKind(enum.StrEnum):
    DISCLOSURE = "disclosure"
    CORRECTION = "correction"
    DELETION = "deletion"
    CEASE_OF_USE = "cease-of-use"


class RequestOutcome(enum.StrEnum):
    DISCLOSED = "disclosed"
    """Disclosure: the report of entries held (possibly none) was given to the person."""
    GRANTED = "granted"
    """Correction, deletion or cease of use carried out (and confirmed by every member)."""
    NOTHING_HELD = "nothing-held"
    """No entry about the person on this node or in the group."""
    REFUSED = "refused"
    """Refused on a legal ground (``RefusalGround``)."""
    WITHDRAWN = "withdrawn"
    """The person withdrew the request."""


class RefusalGround(enum.StrEnum):
    """Grounds on which a business may refuse, with the provision that allows it."""

    ORDER_5_I = "cabinet-order-5-i"
    ORDER_5_II = "cabinet-order-5-ii"
    ORDER_5_III = "cabinet-order-5-iii"
    ORDER_5_IV = "cabinet-order-5-iv"
    ART_33_2_I = "art-33-2-i"
    ART_33_2_II = "art-33-2-ii"
    ART_33_2_III = "art-33-2-iii"

    @property
    def text(self) -> dict[str, str]:
        return _GROUND_TEXT[self]


_GROUND_TEXT: dict[RefusalGround, dict[str, str]] = {
    RefusalGround.ORDER_5_I: {
        "article": "施行令第5条第1号",
        "ja": "存否が明らかになることにより、本人又は第三者の生命、身体又は財産に危害が及ぶおそれがある",
        "en": "knowing whether the data exists could harm the life, body or property of the person or a third party",
    },
    RefusalGround.ORDER_5_II: {
        "article": "施行令第5条第2号",
        "ja": "存否が明らかになることにより、違法又は不当な行為を助長し、又は誘発するおそれがある",
        "en": "knowing whether the data exists could encourage or induce illegal or unjust acts",
    },
    RefusalGround.ORDER_5_III: {
        "article": "施行令第5条第3号",
        "ja": "存否が明らかになることにより、国の安全が害されるおそれ等がある",
        "en": "knowing whether the data exists could harm national security or international relations",
    },
    RefusalGround.ORDER_5_IV: {
        "article": "施行令第5条第4号",
        "ja": "存否が明らかになることにより、犯罪の予防、鎮圧又は捜査その他の公共の安全と秩序の維持に支障が及ぶおそれがある",
        "en": "knowing whether the data exists could hinder crime prevention, suppression or investigation",
    },
    RefusalGround.ART_33_2_I: {
        "article": "法第33条第2項第1号",
        "ja": "本人又は第三者の生命、身体、財産その他の権利利益を害するおそれがある",
        "en": "disclosure could harm the life, body, property or other rights of the person or a third party",
    },
    RefusalGround.ART_33_2_II: {
        "article": "法第33条第2項第2号",
        "ja": "業務の適正な実施に著しい支障を及ぼすおそれがある",
        "en": "disclosure would seriously hinder the proper conduct of the business",
    },
    RefusalGround.ART_33_2_III: {
        "article": "法第33条第2項第3号",
        "ja": "他の法令に違反することとなる",
        "en": "disclosure would violate another law",
    },
}

_OUTCOMES: dict[RequestKind, frozenset[RequestOutcome]] = {
    RequestKind.DISCLOSURE: frozenset(
        {
            RequestOutcome.DISCLOSED,
            RequestOutcome.NOTHING_HELD,
            RequestOutcome.REFUSED,
            RequestOutcome.WITHDRAWN,
        }
    ),
    RequestKind.CORRECTION: frozenset(
        {
            RequestOutcome.GRANTED,
            RequestOutcome.NOTHING_HELD,
            RequestOutcome.REFUSED,
            RequestOutcome.WITHDRAWN,
        }
    ),
    RequestKind.DELETION: frozenset(
        {
            RequestOutcome.GRANTED,
            RequestOutcome.NOTHING_HELD,
            RequestOutcome.REFUSED,
            RequestOutcome.WITHDRAWN,
        }
    ),
    RequestKind.CEASE_OF_USE: frozenset(
        {
            RequestOutcome.GRANTED,
            RequestOutcome.NOTHING_HELD,
            RequestOutcome.REFUSED,
            RequestOutcome.WITHDRAWN,
        }
    ),
}


class RequestRefused(PolicyError):
    """A request cannot be closed this way (outcome that does not fit, refusal without a ground)."""

    code = "request_outcome"


def check_outcome(kind: RequestKind, outcome: RequestOutcome, ground: RefusalGround | None) -> None:
    """Raise ``RequestRefused`` unless ``outcome`` (and ``ground``) may close a request of ``kind``."""
    if outcome not in _OUTCOMES[kind]:
        allowed = ", ".join(sorted(o.value for o in _OUTCOMES[kind]))
        raise RequestRefused(f"a {kind.value} request ends as one of: {allowed}; not {outcome.value!r}")
    if outcome is RequestOutcome.REFUSED and ground is None:
        raise RequestRefused(
            "a refusal must name its legal ground: " + ", ".join(g.value for g in RefusalGround)
        )
    if outcome is not RequestOutcome.REFUSED and ground is not None:
        raise RequestRefused(f"a ground ({ground.value}) is given only with the outcome 'refused'")
    if (
        ground is not None
        and kind is not RequestKind.DISCLOSURE
        and ground in {RefusalGround.ART_33_2_I, RefusalGround.ART_33_2_II, RefusalGround.ART_33_2_III}
    ):
        raise RequestRefused(f"{ground.value} (Art. 33-2) allows refusing a disclosure, not a {kind.value}")


COMPLAINT_CATEGORIES = frozenset(
    {"misidentification", "registration", "data-handling", "notice", "request-handling", "other"}
)
"""What a complaint (Art. 40) is about, so they can be counted by kind in the transparency report."""
COMPLAINT_CHANNELS = frozenset({"public", "counter", "phone", "mail", "organisation"})
COMPLAINT_OUTCOMES = frozenset({"resolved", "rejected", "referred"})
"""resolved: handled and answered; rejected: unfounded, with the reason noted; referred: to the
organisation or another member that holds the data."""
COMPLAINT_ANSWER_OUTCOMES = frozenset({"resolved", "rejected"})
"""What a member answers the organisation about a complaint it referred (``complaint-answer``):
it handled it, or found it unfounded; the text says what it did or why."""
REFERRAL_DAYS = 14
"""The answer deadline the organisation's console proposes when it refers a complaint to a member."""
