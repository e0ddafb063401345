"""The stream grammar in-process: what handlers yield, normalised, read by the official
``openai`` client's own stream accumulator and validated against its event types."""

from __future__ import annotations

import json

import pydantic
from openai import omit
import pytest
from mlflow.types.responses import ResponsesAgentStreamEvent
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent

from agent_server.long_running.storage.models import Status
from agent_server.long_running.events.response_object import build_response, event_json
from agent_server.long_running.events.stream_grammar import StreamGrammar, seam_after

RID = "resp_" + "a" * 32
EVENT = pydantic.TypeAdapter(ResponseStreamEvent)


def _message(text: str, item_id: str = RID) -> dict:
    return {"type": "message", "id": item_id, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def _delta(text: str, item_id: str = RID) -> dict:
    return {"type": "response.output_text.delta", "item_id": item_id, "delta": text}


def _response(status: Status, output: list, attempt: int = 1) -> dict:
    return build_response(response_id=RID, created_at=0, status=status, model="agent", output=output,
                          attempt_number=attempt)


class _Log:
    """Events numbered as the writer numbers them."""

    def __init__(self):
        self.events: list[dict] = []

    def add(self, *events: dict) -> None:
        for event in events:
            self.events.append(json.loads(event_json(dict(event), len(self.events), RID)))

    def feed(self, grammar: StreamGrammar, handler_events: list[dict]) -> list[dict]:
        output = []
        normalised = [e for event in handler_events for e in grammar.feed(event)] + grammar.close_open()
        for event in normalised:
            self.add(event)
            if event["type"] == "response.output_item.done":
                output.append(event["item"])
        return output


def _accumulate(events: list[dict]):
    """Run the official client's accumulator over the events; its final Response."""
    state = ResponseStreamState(input_tools=omit, text_format=omit)
    for data in events:
        if data["type"] == "response.resumed":
            continue  # our extension: the client's stream passes it through
        state.handle_event(EVENT.validate_python(data))
    return state._completed_response


HANDLERS = {
    "mlflow minimal (deltas then the item)": [_delta("Hel"), _delta("lo"), {"type": "response.output_item.done",
                                                                            "item": _message("Hello")}],
    "items only (an invoke handler)": [
        {"type": "response.output_item.done", "item": {"type": "function_call", "id": RID, "call_id": "c1",
                                                       "name": "get_time", "arguments": "{}"}},
        {"type": "response.output_item.done", "item": {"type": "function_call_output", "call_id": "c1",
                                                       "output": "noon"}},
        {"type": "response.output_item.done", "item": _message("It is noon.")},
    ],
    "deltas never closed": [_delta("dangling "), _delta("text")],
    "an SDK's raw events, lifecycle included": [
        {"type": "response.created", "response": {"id": "resp_from_the_model"}},
        {"type": "response.output_item.added", "output_index": 7, "item": {**_message(""), "id": "msg_sdk",
                                                                          "content": []}},
        _delta("raw", "msg_sdk"), {"type": "response.output_text.done", "item_id": "msg_sdk", "text": "raw"},
        {"type": "response.output_item.done", "item": _message("raw", "msg_sdk")},
        {"type": "response.completed", "response": {"id": "resp_from_the_model"}},
    ],
}


@pytest.mark.parametrize("name", HANDLERS)
def test_every_handler_shape_gives_the_full_grammar(name):
    log = _Log()
    log.add({"type": "response.created", "response": _response(Status.IN_PROGRESS, [])},
            {"type": "response.in_progress", "response": _response(Status.IN_PROGRESS, [])})
    output = log.feed(StreamGrammar(RID), HANDLERS[name])
    log.add({"type": "response.completed", "response": _response(Status.COMPLETED, output)})

    final = _accumulate(log.events)
    assert [item.model_dump(exclude_none=True) for item in final.output] == output
    expected_text = {"mlflow minimal (deltas then the item)": "Hello", "items only (an invoke handler)": "It is noon.",
                     "deltas never closed": "dangling text", "an SDK's raw events, lifecycle included": "raw"}[name]
    assert final.output_text == expected_text
    # Each item has its own id; the response id is never an item id; indices are the output's.
    ids = [item["id"] for item in output]
    assert len(set(ids)) == len(ids) and RID not in ids
    for event in log.events:
        if "output_index" in event:
            assert output[event["output_index"]]["id"] in (event.get("item", {}).get("id"), event.get("item_id"))
    # Databricks clients validate every event with MLflow's stream-event model.
    for event in log.events:
        ResponsesAgentStreamEvent.model_validate(event)
    # The handler's own lifecycle events never reach the log.
    assert [e["type"] for e in log.events].count("response.created") == 1
    assert "resp_from_the_model" not in json.dumps(log.events)


def test_a_resumed_attempt_closes_what_the_crashed_one_left_open():
    log = _Log()
    log.add({"type": "response.created", "response": _response(Status.IN_PROGRESS, [])},
            {"type": "response.in_progress", "response": _response(Status.IN_PROGRESS, [])})
    # Attempt 1 finishes a tool call, then dies halfway through its answer.
    first = StreamGrammar(RID)
    for event in HANDLERS["items only (an invoke handler)"][:2] + [_delta("It is no")]:
        for normalised in first.feed(event):
            log.add(normalised)
    prior = [json.dumps(e) for e in log.events]

    seam = seam_after(prior, RID)
    assert seam.next_output_index == 3
    assert [e["type"] for e in seam.closing_events] == [
        "response.output_text.done", "response.content_part.done", "response.output_item.done"]
    closing = seam.closing_events[-1]
    assert closing["item"]["status"] == "incomplete" and closing["output_index"] == 2
    assert closing["item"]["content"][0]["text"] == "It is no"  # what the client already saw
    log.add({"type": "response.resumed", "attempt_number": 2}, *seam.closing_events,
            {"type": "response.in_progress", "response": _response(Status.IN_PROGRESS, [], 2)})
    output = log.feed(StreamGrammar(RID, first_output_index=seam.next_output_index),
                      [_delta("It is noon."), {"type": "response.output_item.done", "item": _message("It is noon.")}])
    log.add({"type": "response.completed", "response": _response(Status.COMPLETED, output, 2)})

    final = _accumulate(log.events)
    # The final output is the final attempt's; the client's accumulator accepts the seam.
    assert final.output_text == "It is noon."
    assert [e["output_index"] for e in log.events if e["type"] == "response.output_item.added"] == [0, 1, 2, 3]
