"""Private query mode (CKKS): answering peers' encrypted queries in HE worker processes and
asking peers privately, with deadlines that follow the work. Built on federation's peer
client and gate; may import federation, context and below, never http or app.
"""
