"""How segstream writes JSON: compact UTF-8, one encoder for every record it produces (segment
changes, memberships, dead letters, metric snapshots) and every event its tools and test
harness publish. Table values are MessagePack instead (:mod:`segstream.state.codec`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def compact_json(value: Mapping[str, Any]) -> bytes:
    r"""``value`` as compact UTF-8 JSON: no spaces, keys in their order, non-ASCII text as
    itself (not ``\u`` escapes), as a platform would send it.

    >>> compact_json({"shop_id": "tea-1", "customer_id": "Zoë", "amount": 12.5})
    b'{"shop_id":"tea-1","customer_id":"Zo\xc3\xab","amount":12.5}'
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
