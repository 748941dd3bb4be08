"""``watchnet demo`` and the local multi-process network it and the federation tests run on.
Starts real ``watchnet`` processes; may import records and below and never the CLI's main.
"""
