"""Cases staff handle around the watchlist: data-subject requests, complaints and operators'
verdicts on alerts. May import records and below only.
"""
