"""Creating a node directory: config, key files (0600), schema, the trusted manifest and rules.

``watchnet init`` and the local network (the demo and the federation tests) both create nodes
through ``create_node``, so what the demo shows is what an operator's ``init`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import tomli_w

from governance.manifest import Manifest
from governance.rules import RegistrationRules
from governance.trust import verify_initial
from node.config import CONFIG_FILE, RULES_FILE, NodeConfig, load_manifest_file
from node.files import write_atomic
from node.records.keystore import save_key
from node.records.manifests import install_manifest
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
    write_atomic(path, rules_text.encode("utf-8"))


def create_node(config: NodeConfig, manifest_file: Path | None, now: datetime) -> CreatedNode:
    """Write ``config``'s directory with fresh keys and the newest schema; install the manifest
    from ``manifest_file`` if given (verified against the config's pinned root key ids)."""
    directory = config.directory
    if (directory / CONFIG_FILE).exists():
        raise ConfigurationError(f"{directory} already holds a node; refusing to overwrite it")
    manifest_doc = load_manifest_file(manifest_file) if manifest_file else None
    manifest = verify_initial(manifest_doc, list(config.root_keyids), now) if manifest_doc else None
    directory.mkdir(parents=True, exist_ok=True)
    signing, encryption = SigningKey.generate(), EncryptionKey.generate()
    save_key(config.path(config.signing_key_file), signing)
    save_key(config.path(config.encryption_key_file), encryption)
    save_key(config.path(config.data_key_file), DataKey.generate())
    write_atomic(directory / CONFIG_FILE, config.to_toml().encode("utf-8"))
    engine = make_engine(config.effective_database_url)
    try:
        revision = upgrade(engine)
        if manifest_doc is not None:
            install_manifest(directory, engine, config.root_keyids, manifest_doc, now, str(manifest_file))
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
