"""The node's JSON API: small typed aiohttp handlers, the shared staff checks, body parsing and
error statuses, the OpenAPI document. May import private, federation, context and below;
never app, console, cli or demo.
"""
