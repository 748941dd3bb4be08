"""What a node keeps and signs: the watchlist registry, the event log and audit log, the
faiss match index, staff accounts, the vault, key files and the trusted manifest.
May import storage, face, config and files only.
"""
