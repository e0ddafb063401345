"""Scorers: two that need no model (so they run against the offline model), and
MLflow's LLM judges when a judge model is available."""

from __future__ import annotations

from mlflow.entities import Feedback
from mlflow.genai.scorers import scorer

from agent_server.agents.common.message_text import text_of


def _items(outputs) -> list[dict]:
    return list((outputs or {}).get("output") or [])


def answer_text(outputs) -> str:
    """The text of the response's assistant messages."""
    return "\n".join(text_of(item.get("content")) for item in _items(outputs) if item.get("type") == "message")


def tools_called(outputs) -> list[str]:
    return [item.get("name", "") for item in _items(outputs) if item.get("type") == "function_call"]


@scorer
def expected_facts_present(outputs, expectations) -> Feedback:
    """Every expected fact appears in the answer (case-insensitive substring)."""
    facts = (expectations or {}).get("expected_facts") or []
    text = answer_text(outputs).lower()
    missing = [fact for fact in facts if fact.lower() not in text]
    if missing:
        return Feedback(value="no", rationale=f"missing from the answer: {', '.join(map(repr, missing))}")
    return Feedback(value="yes", rationale=f"all {len(facts)} expected facts present" if facts else "none expected")


@scorer
def expected_tools_called(outputs, expectations) -> Feedback:
    """Every expected tool was called (others may be too)."""
    expected = (expectations or {}).get("expected_tools") or []
    called = tools_called(outputs)
    missing = [name for name in expected if name not in called]
    if missing:
        return Feedback(value="no", rationale=f"not called: {', '.join(missing)}; called: {', '.join(called) or 'none'}")
    return Feedback(value="yes", rationale=f"called: {', '.join(called) or 'none'}")


OFFLINE_SCORERS = [expected_facts_present, expected_tools_called]


def judge_scorers(judge_model: str) -> list:
    """MLflow's LLM judges, asking ``judge_model`` (e.g. ``databricks:/<endpoint>``)."""
    from mlflow.genai.scorers import Correctness, RelevanceToQuery, Safety

    return [Correctness(model=judge_model), RelevanceToQuery(model=judge_model), Safety(model=judge_model)]
