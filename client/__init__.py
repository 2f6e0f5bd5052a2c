"""The light client: decode IRs locally without torch, and talk to a latentwire server.

    from latentwire.client import Client, decode
    image = decode(ir_bytes)                       # PIL.Image.Image, shipped models
    with Client("http://127.0.0.1:8000") as c:
        ir = c.encode("shirt.png")
        image = c.decode(ir)                       # fetches a decoder it lacks, once

Every malformed, truncated, foreign or future-version IR raises :class:`IRError`, a
``ValueError``; what the server says raises a :class:`LatentwireError`.
"""

from latentwire.client.decoding import DecoderStore, decode, decode_array, decode_batch
from latentwire.client.http import (
    AsyncClient,
    AuthenticationError,
    Client,
    ConnectionFailed,
    LatentwireError,
    Overloaded,
    ServerError,
)
from latentwire.shared.decoding import Decoder
from latentwire.shared.wire import IRError

__all__ = [
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "ConnectionFailed",
    "Decoder",
    "DecoderStore",
    "IRError",
    "LatentwireError",
    "Overloaded",
    "ServerError",
    "decode",
    "decode_array",
    "decode_batch",
]
