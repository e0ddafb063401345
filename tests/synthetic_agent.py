"""The scriptable agent the engine tests run; it lives in ``scripts/chaos_agent.py``
so that ``scripts/chaos.py`` (which must not import from ``tests/``) runs the same
one. See that module for the ``custom_inputs`` it understands.

Importing this module registers the handlers (once per process).
"""

from scripts.chaos_agent import TEXT_PREFIX, synthetic_invoke, synthetic_stream  # noqa: F401

__all__ = ["TEXT_PREFIX", "synthetic_invoke", "synthetic_stream"]
