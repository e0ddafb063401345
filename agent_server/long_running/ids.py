"""The ids the engine hands out, and the one pattern each must match when a client sends it back."""

from __future__ import annotations

import re
import uuid

RESPONSE_ID = re.compile(r"^resp_[0-9a-f]{32}$")
CONVERSATION_ID = re.compile(r"^conv_[0-9a-f]{32}$")
MEMORY_ID = re.compile(r"^mem_[0-9a-f]{32}$")


def new_response_id() -> str:
    return f"resp_{uuid.uuid4().hex}"


def new_conversation_id() -> str:
    return f"conv_{uuid.uuid4().hex}"


def new_memory_id() -> str:
    return f"mem_{uuid.uuid4().hex}"
