"""The node's process: the aiohttp application assembled from the HTTP handlers, the console,
federation and private mode, its access middleware and background duties.
May import every other node subpackage; nothing in node/ imports it but the CLI.
"""
