"""The text of a message's content, whichever SDK shaped it."""

from __future__ import annotations

from typing import Any

# Content-block types that carry text: LangChain's "text", the Responses API's
# "input_text" / "output_text"; other blocks (tool use, images, reasoning) do not.
_TEXT_BLOCKS = (None, "text", "input_text", "output_text")


def text_of(content: Any) -> str:
    """A string as is; the text blocks of a list of content blocks, joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part if isinstance(part, str) else (part.get("text") or "")
            for part in content
            if isinstance(part, str) or (isinstance(part, dict) and part.get("type") in _TEXT_BLOCKS)
        )
    return ""
