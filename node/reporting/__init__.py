"""What the node shows the public and auditors: the transparency report and its HTML, the
notice pages and signage, log and audit verification. May import records and below only.
"""
