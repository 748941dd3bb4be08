"""The certified privacy organisation's server (``watchnet gov serve``), not a member's node:
the manifest, the notice and the complaint register. May import http's notice routes,
reporting and below, never a member's app, federation or private mode.
"""
