"""The camera worker (``watchnet camera run``): streams in, faces tracked, one question per passer-by.

It is a client of the node's HTTP API, like any other staff tool: it authenticates with a camera
account's token and may import only the units below ``app`` that carry no server state (the face
pipeline, the config, ``files``, ``jsonlog``), so one worker can run per store, beside or far
from the node. Frames, crops and embeddings of people who match nothing live only in its memory.
"""
