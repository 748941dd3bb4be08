"""One exception hierarchy for everything that can go wrong with watchnet data.

The split is by whose fault it is, because that decides what a node does next:

- ``MalformedError``: the bytes or dict are not a valid object (the sender's fault; refuse).
- ``VerificationError``: well-formed, but a signature, threshold, decryption, commitment or
  Merkle proof does not check out (forged, tampered or not meant for us; refuse and audit).
- ``FreshnessError``: authentic but stale or replayed (expired, rolled back, replayed nonce,
  issued outside the clock window).
- ``PolicyError``: authentic and fresh, but the governance rules forbid it (wrong purpose,
  not a member, category not allowed...). Raised by ``governance``.
- ``ConfigurationError``: our own setup is wrong (missing key file, bad permissions).

Every error carries a stable ``code`` so ``node/`` can map it to an HTTP status and a wire
error code without parsing messages. Messages give the value received, the value expected
and counts, and never contain keys, embeddings or images.
"""

from __future__ import annotations

__all__ = [
    "BackupError",
    "ClockSkewError",
    "CommitmentError",
    "ConfigurationError",
    "DecryptionError",
    "ExpiredError",
    "FreshnessError",
    "MalformedError",
    "MisaddressedError",
    "OversizedError",
    "PolicyError",
    "ProofError",
    "ReplayCacheFullError",
    "ReplayError",
    "RollbackError",
    "SignatureError",
    "ThresholdError",
    "UnknownSenderError",
    "VerificationError",
    "WatchnetError",
]


class WatchnetError(Exception):
    """Root of every error watchnet raises on purpose."""

    code: str = "error"


class MalformedError(WatchnetError):
    """The input is not a well-formed object of the expected type."""

    code = "malformed"


class OversizedError(MalformedError):
    """The input (or a field of it) is larger than the hard limit."""

    code = "oversized"


class VerificationError(WatchnetError):
    """Cryptographic verification failed."""

    code = "verification_failed"


class SignatureError(VerificationError):
    """A signature is invalid, made by an unknown key, or a key id does not match its key."""

    code = "bad_signature"


class ThresholdError(SignatureError):
    """Fewer valid signatures than the threshold (e.g. "signed by 1/2 keys")."""

    code = "threshold_not_met"


class DecryptionError(VerificationError):
    """A sealed message could not be opened: not addressed to us, or tampered with."""

    code = "decryption_failed"


class CommitmentError(VerificationError):
    """A payload does not match its salted commitment."""

    code = "commitment_mismatch"


class ProofError(VerificationError):
    """A Merkle inclusion or consistency proof does not verify."""

    code = "bad_proof"


class FreshnessError(WatchnetError):
    """Authentic, but stale or replayed."""

    code = "stale"


class ExpiredError(FreshnessError):
    """The object's ``expires`` time has passed."""

    code = "expired"


class RollbackError(FreshnessError):
    """A version not newer than the one already trusted (rollback or freeze attack)."""

    code = "rollback"


class ReplayError(FreshnessError):
    """A nonce that was already seen inside the replay window."""

    code = "replay"


class ClockSkewError(FreshnessError):
    """``issued_at`` lies outside the accepted window around our clock."""

    code = "clock_skew"


class PolicyError(WatchnetError):
    """The governance rules refuse this (raised by ``governance``)."""

    code = "policy_refused"


class ConfigurationError(WatchnetError):
    """Our own configuration is wrong: say what to fix."""

    code = "configuration"


class UnknownSenderError(VerificationError):
    """A message from a node we hold no keys for (not a member of the trusted manifest)."""

    code = "unknown_peer"


class MisaddressedError(VerificationError):
    """A message addressed to another node, or whose inner and outer addresses disagree."""

    code = "misaddressed"


class BackupError(VerificationError):
    """A backup file that is not whole: not the format, cut short, extended, or its header out of
    bounds (a wrong passphrase or a changed byte is a ``DecryptionError``)."""

    code = "backup_invalid"


class ReplayCacheFullError(ReplayError):
    """The replay cache holds its limit of nonces still inside the window: refused, retry later.

    Not the sender's fault (the message may be fresh), so ``node/`` can answer "busy" rather
    than "replay"; it stays a ``ReplayError`` because the guard fails closed.
    """

    code = "replay_cache_full"
