"""Persistent state of a node: SQLModel tables, the engine, and schema migrations."""
