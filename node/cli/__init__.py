"""The ``watchnet`` command line: one module per command group; parsers are built without
importing the database, face, HE or chart libraries (each command imports what it runs).
May import every other node subpackage.
"""
