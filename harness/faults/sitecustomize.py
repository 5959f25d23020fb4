"""Faults a test worker can be started with (see :func:`harness.workers.faulty_env`).

Python imports ``sitecustomize`` at start-up from any folder on ``PYTHONPATH``; a worker
started with this folder there gets these faults before any of segstream is imported, so
the code under test is the shipped code with one call made to fail:

- a customer id starting ``fault-encode-``: storing the customer's state fails
  (``OverflowError``), after the event was handled (as the 1e308 order of issue 24 did);
- a customer id starting ``fault-handle-``: handling the event fails (``RuntimeError``);
- while the file ``every-order`` exists in the folder ``FAULT_DIR`` names: every
  order fails (``OSError``), a bug or outage no single record explains.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from segstream.engine import pipeline
from segstream.state import codec

_FAULT_DIR = Path(os.environ.get("FAULT_DIR", "/nonexistent"))
_encode_state = codec.encode_state
_handle = pipeline.Pipeline.handle


def _failing_encode(state: Any) -> bytes:
    if state.customer_id.startswith("fault-encode-"):
        raise OverflowError("cannot convert float infinity to integer")
    return _encode_state(state)


def _failing_handle(self: Any, raw: bytes | None, expected: Any, *args: Any) -> Any:
    if raw is not None and b'"customer_id":"fault-handle-' in raw:
        raise RuntimeError("injected fault while handling")
    if expected.type_name == "order" and (_FAULT_DIR / "every-order").exists():
        raise OSError(28, "No space left on device")
    return _handle(self, raw, expected, *args)


codec.encode_state = _failing_encode  # before segstream.stream.tables imports it
pipeline.Pipeline.handle = _failing_handle  # type: ignore[method-assign,assignment]
