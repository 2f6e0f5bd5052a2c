"""What the server, the client and training must agree on.

Torch-free at import: the light client imports from here. Modules that need torch
(`latentwire.shared.models`) import it themselves.
"""
