"""Byte-level tokenizer for captions (as ByT5 / CLIPPO-style byte models).

Why bytes: nothing to train, ship or download, no out-of-vocabulary text in any language, and the same ids on
every machine forever. The price is longer sequences (one token per UTF-8 byte), acceptable for captions.
tensorflow-datasets' ByteTextEncoder would do the same but imports TensorFlow, which rlvis does not depend on.
Host-side and numpy-only, so Grain may call it in its threads.
"""

import numpy as np

PAD, BOS, EOS = 0, 1, 2
OFFSET = 3  # byte b becomes token b + 3
VOCAB_SIZE = 256 + OFFSET


def encode(text: str, length: int) -> np.ndarray:
    """text → int32 [length]: BOS, bytes, EOS, then PAD; too-long captions are cut (EOS kept)."""
    body = np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)[: length - 2] + OFFSET
    ids = np.full((length,), PAD, np.int32)
    ids[0], ids[1 : 1 + len(body)], ids[1 + len(body)] = BOS, body, EOS
    return ids


def decode(ids: np.ndarray) -> str:
    body = [int(i) - OFFSET for i in ids if int(i) >= OFFSET]
    return bytes(body).decode("utf-8", errors="replace")
