"""Creating a node directory (0700): config, key files, database, manifest and rules (all 0600).

``watchnet init`` and the local network (the demo and the federation tests) both create nodes
through ``create_node``, so what the demo shows is what an operator's ``init`` does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import tomli_w

from governance.manifest import Manifest
from governance.rules import RegistrationRules
from node.config import CONFIG_FILE, RULES_FILE, NodeConfig, load_manifest_file
from node.files import PRIVATE_DIR, PRIVATE_FILE, write_atomic
from node.records.keystore import save_key
from node.records.manifests import install_manifest, verify_first_manifest
from node.storage.engine import make_engine
from node.storage.migrate import upgrade
from protocol.errors import ConfigurationError
from protocol.keys import DataKey, EncryptionKey, SigningKey

__all__ = ["CreatedNode", "create_node", "default_rules", "write_default_rules"]


@dataclass(frozen=True)
class CreatedNode:
    config: NodeConfig
    signing_key: str
    encryption_key: str
    keyid: str
    schema: str
    standing: str
    """Where the node stands in the manifest, and what its operator must do next."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.config.directory),
            "node_id": self.config.node_id,
            "signing_key": self.signing_key,
            "encryption_key": self.encryption_key,
            "keyid": self.keyid,
            "schema": self.schema,
            "standing": self.standing,
        }


def default_rules(manifest: Manifest) -> dict[str, Any]:
    """A starting point for the node's written rules: the group's policy, to be narrowed by the business."""
    return {
        "categories": list(manifest.policy.incident_categories),
        "evidence_kinds": list(manifest.policy.required_evidence),
        "retention_days": manifest.policy.max_retention_days,
    }


def write_default_rules(directory: Path, manifest: Manifest) -> None:
    """Write the node's rules from the group policy, unless the business already wrote its own."""
    path = directory / RULES_FILE
    if path.exists():
        return
    RegistrationRules.from_dict(default_rules(manifest)).check_against(manifest)
    rules_text = (
        "# Written registration rules of this node (社内ルール). They may only narrow the group's policy.\n"
        + tomli_w.dumps(default_rules(manifest))
    )
    write_atomic(path, rules_text.encode("utf-8"), mode=PRIVATE_FILE)


def create_node(config: NodeConfig, manifest_file: Path | None, now: datetime) -> CreatedNode:
    """Write ``config``'s directory with fresh keys and the newest schema; install the manifest
    from ``manifest_file`` if given (verified against the config's pinned root key ids and threshold).

    A config without ``root_threshold`` gets one written: the threshold the given manifest
    declares, but at least ``pinned_root_threshold`` (2, or 1 when a single key is pinned).
    The directory is made 0700 and every file in it 0600.
    """
    directory = config.directory
    if (directory / CONFIG_FILE).exists():
        raise ConfigurationError(f"{directory} already holds a node; refusing to overwrite it")
    manifest_doc = load_manifest_file(manifest_file) if manifest_file else None
    if config.root_threshold is None:
        declared = manifest_doc.payload.manifest_role.threshold if manifest_doc else 0
        config = replace(config, root_threshold=max(declared, config.pinned_root_threshold) or None)
    if config.root_threshold is not None and not 1 <= config.root_threshold <= len(config.root_keyids):
        raise ConfigurationError(
            f"root threshold {config.root_threshold} needs between 1 and the {len(config.root_keyids)} "
            "pinned root key ids"
        )
    manifest = (
        verify_first_manifest(manifest_doc, config.root_keyids, config.pinned_root_threshold, now)
        if manifest_doc
        else None
    )
    directory.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(directory, PRIVATE_DIR)
    for key_file in (config.signing_key_file, config.encryption_key_file, config.data_key_file):
        config.path(key_file).parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    signing, encryption = SigningKey.generate(), EncryptionKey.generate()
    save_key(config.path(config.signing_key_file), signing)
    save_key(config.path(config.encryption_key_file), encryption)
    save_key(config.path(config.data_key_file), DataKey.generate())
    write_atomic(directory / CONFIG_FILE, config.to_toml().encode("utf-8"), mode=PRIVATE_FILE)
    engine = make_engine(config.effective_database_url)
    try:
        revision = upgrade(engine)
        if manifest_doc is not None:
            install_manifest(
                directory,
                engine,
                config.root_keyids,
                manifest_doc,
                now,
                str(manifest_file),
                root_threshold=config.pinned_root_threshold,
            )
            write_default_rules(directory, manifest_doc.payload)
    finally:
        engine.dispose()
    member = manifest.member(config.node_id) if manifest else None
    if manifest is None:
        standing = (
            "no manifest yet: give both public keys to the organisation, then run "
            "'watchnet manifest fetch' (or 'watchnet manifest install FILE')"
        )
    elif member is None:
        standing = "not listed in the manifest yet: give both public keys to the organisation"
    elif (member.signing_key, member.encryption_key) != (signing.public, encryption.public):
        standing = "listed in the manifest with other keys: give these public keys to the organisation"
    else:
        standing = "listed in the manifest with these keys"
    return CreatedNode(
        config=config,
        signing_key=signing.public.to_str(),
        encryption_key=encryption.public.to_str(),
        keyid=signing.keyid,
        schema=revision,
        standing=standing,
    )
