"""The light client: decode IRs locally without torch.

    from latentwire.client import decode
    image = decode(ir_bytes)          # PIL.Image.Image

Every malformed, truncated, foreign or future-version IR raises :class:`IRError`, a
``ValueError``.
"""

from latentwire.client.decoding import Decoder, DecoderStore, decode, decode_array, decode_batch
from latentwire.shared.wire import IRError

__all__ = ["Decoder", "DecoderStore", "IRError", "decode", "decode_array", "decode_batch"]
