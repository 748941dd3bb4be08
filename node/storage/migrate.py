"""Schema migrations with Alembic, configured in code so an operator needs no alembic.ini.

``upgrade`` brings a database to the newest revision; ``check_schema`` is what ``watchnet serve``
calls at start, refusing to run on a database that is behind (or ahead of) this code.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from protocol.errors import ConfigurationError

__all__ = ["check_schema", "current_revision", "head_revision", "upgrade"]

_SCRIPTS = Path(__file__).resolve().parent.parent / "migrations"


def _config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config_for_scripts()).get_current_head()
    assert head is not None
    return head


def _config_for_scripts() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> str:
    command.upgrade(_config(engine), "head")
    return head_revision()


def check_schema(engine: Engine) -> None:
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise ConfigurationError(
            f"database schema is at {current or 'nothing (empty database)'}, this node needs {head}; "
            "run 'watchnet db upgrade'"
        )
