"""The offline model: a deterministic stand-in for an LLM, one adapter per SDK.

It streams fixed text token by token and really calls the agent's tools, so
the whole server (background runs, tool calls, streaming) works with no
network and no Databricks account. It is not an LLM and never claims to be:
its answers say so.
"""

from .script import Plan, TextReply, ToolCall, Turn, plan_reply, split_tokens

__all__ = ["Plan", "TextReply", "ToolCall", "Turn", "plan_reply", "split_tokens"]
