"""Everything a running node needs, loaded once from its directory: config, keys, database, policy.

The node directory holds ``config.toml``, the key files (0600), the trusted manifest and the
written registration rules. Loading checks each and says what to do when one is missing or wrong;
the service, the CLI and the tests all start a node through ``NodeContext.load``.
"""

from __future__ import annotations

import threading
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from governance.manifest import Manifest
from governance.rules import RegistrationRules
from node.casework.subject_requests import SubjectRequests
from node.config import MANIFEST_FILE, RULES_FILE, NodeConfig, load_manifest_file
from node.face.models import ModelPack
from node.face.pipeline import FacePipeline
from node.records.accounts import StaffAccounts
from node.records.alert_faces import AlertFaces
from node.records.hits import HitLedger
from node.records.keystore import load_data_key, load_encryption_key, load_signing_key
from node.records.manifests import ManifestStore
from node.records.matching import MatchIndex
from node.records.record_keys import RecordKeys
from node.records.registry import Registry
from node.records.shredding import reseal_legacy
from node.records.vault import Vault
from node.storage.engine import make_engine
from node.storage.migrate import check_schema
from protocol.errors import ConfigurationError, MalformedError
from protocol.keys import EncryptionKey, SigningKey

__all__ = ["NodeContext"]


@dataclass
class NodeContext:
    config: NodeConfig
    engine: Engine
    signing_key: SigningKey
    encryption_key: EncryptionKey
    manifests: ManifestStore
    rules: RegistrationRules
    accounts: StaffAccounts
    registry: Registry
    model_pack: ModelPack
    subject_requests: SubjectRequests
    hits: HitLedger
    alerts: AlertFaces
    """Alerts' sightings and the camera's face crops, erased after the review window."""
    _faces: FacePipeline | None = None
    _faces_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def manifest(self) -> Manifest:
        """The manifest trusted at this moment (it can change while the node runs)."""
        return self.manifests.current

    @property
    def faces(self) -> FacePipeline:
        """The face pipeline, loaded on first use (the model pin was already checked at load)."""
        with self._faces_lock:
            if self._faces is None:
                self._faces = FacePipeline(self.model_pack)
            return self._faces

    @classmethod
    def load(cls, directory: Path, *, database_url: str | None = None, check: bool = True) -> NodeContext:
        config = NodeConfig.load(directory)
        engine = make_engine(database_url or config.effective_database_url)
        if check:
            check_schema(engine)
        signing_key = load_signing_key(config.path(config.signing_key_file))
        encryption_key = load_encryption_key(config.path(config.encryption_key_file))
        data_key = config.data_key_from_env() or load_data_key(config.path(config.data_key_file))
        manifests = ManifestStore.load(
            config.directory / MANIFEST_FILE,
            engine,
            load_manifest_file(config.directory / MANIFEST_FILE),
            datetime.now(UTC).replace(microsecond=0),
            grace=config.federation.manifest_grace,
        )
        manifest = manifests.current
        try:
            rules = RegistrationRules.from_dict(
                tomllib.loads((config.directory / RULES_FILE).read_text(encoding="utf-8"))
            )
        except FileNotFoundError as e:
            raise ConfigurationError(
                f"{config.directory / RULES_FILE} not found; write the node's registration rules"
            ) from e
        except (tomllib.TOMLDecodeError, MalformedError) as e:
            raise ConfigurationError(f"{config.directory / RULES_FILE}: {e}") from e
        rules.check_against(manifest)
        vault = Vault(data_key, RecordKeys(config.path(config.record_keys_dir), data_key))
        if check:
            reseal_legacy(engine, vault)
        registry = Registry(
            engine=engine,
            node_id=config.node_id,
            signing_key=signing_key,
            vault=vault,
            manifest=lambda: manifests.current,
            rules=rules,
            index=MatchIndex(manifest.policy.model.dimension),
        )
        model_pack = ModelPack.locate(model_id=manifest.policy.model.model_id)
        model_pack.check_pin(manifest.policy.model)
        return cls(
            config,
            engine,
            signing_key,
            encryption_key,
            manifests,
            rules,
            StaffAccounts(engine),
            registry,
            model_pack,
            SubjectRequests(engine, vault, config.node_id, registry.write_lock),
            HitLedger(engine, registry.write_lock, data_key.secret, manifest.policy.model.dimension),
            AlertFaces(engine, vault, config.alerts, registry.write_lock),
        )
