"""Talking to the other members: the peer gate (the one door for sealed messages), the peer
client, fan-out queries, log following with receipts, notices and the manifest poll.
May import context, casework, reporting, records and below; never private, http or app.
"""
