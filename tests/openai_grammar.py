"""What a conforming OpenAI Responses stream looks like, checked on raw SSE frames.

Two checks, used by the real-client conformance tests:

- :func:`parse_strictly`: every ``data:`` frame is one of the events in the
  ``openai`` package's ``ResponseStreamEvent`` union, validated in pydantic's
  strict mode; the only event outside the union allowed is our extension
  ``response.resumed``. The stream ends with ``data: [DONE]``.
- :class:`Grammar`: the order OpenAI's clients rely on — ``response.created``,
  ``response.in_progress``, per item ``output_item.added`` → (content parts and
  text deltas, or function-call argument deltas) → ``output_item.done``, then
  one terminal event whose Response holds the items of the last attempt.
"""

from __future__ import annotations

import json
import typing

import httpx
import pydantic
from openai.types.responses import ResponseStreamEvent

STREAM_EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
TERMINAL = {"response.completed": "completed", "response.failed": "failed",
            "response.cancelled": "cancelled", "response.incomplete": "incomplete"}
RESUMED = "response.resumed"  # our extension, not in OpenAI's union


def _event_classes() -> dict[str, type[pydantic.BaseModel]]:
    """``type`` literal -> the union member that has it (for a focused error message)."""
    union = typing.get_args(ResponseStreamEvent)[0]
    return {typing.get_args(cls.model_fields["type"].annotation)[0]: cls for cls in typing.get_args(union)}


EVENT_CLASSES = _event_classes()


def read_sse(client: httpx.Client, method: str, url: str, **kwargs) -> list[str]:
    """The ``data:`` payloads of a whole SSE answer, as sent (strings, ``[DONE]`` included)."""
    with client.stream(method, url, **kwargs) as response:
        assert response.status_code == 200, (response.status_code, response.read())
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


def parse_strictly(payloads: list[str], *, terminated: bool = True) -> list[dict]:
    """The events of ``payloads``, each validated strictly; ``[DONE]`` last (when ``terminated``)."""
    if terminated:
        assert payloads and payloads[-1] == "[DONE]", payloads[-3:]
        payloads = payloads[:-1]
    assert "[DONE]" not in payloads, "[DONE] before the end of the stream"
    events = []
    for payload in payloads:
        event = json.loads(payload)
        kind = event.get("type")
        if kind == RESUMED:
            assert isinstance(event.get("attempt_number"), int) and event["attempt_number"] >= 2, event
            assert isinstance(event.get("sequence_number"), int), event
        else:
            try:
                parsed = STREAM_EVENT.validate_json(payload, strict=True)
            except pydantic.ValidationError as exc:
                cls = EVENT_CLASSES.get(kind)
                if cls is None:
                    raise AssertionError(f"event type {kind!r} is not in OpenAI's ResponseStreamEvent: {payload[:500]}") from None
                try:  # re-validate against the one member of that type, for a readable error
                    cls.model_validate_json(payload, strict=True)
                except pydantic.ValidationError as focused:
                    raise AssertionError(f"{kind} does not parse as {cls.__name__}: {focused}\n{payload[:1000]}") from None
                raise AssertionError(f"{kind}: {exc}") from None
            assert parsed.type == kind, (parsed.type, kind)
        events.append(event)
    return events


class Grammar:
    """Feed the events of one response in order; :meth:`finish` checks the end."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.response_id: str | None = None
        self.items: dict[int, dict] = {}  # output_index -> what was added, and progress
        self.item_ids: set[str] = set()
        self.last_index = -1
        self.attempt = 1
        self.closing_after_resume = False
        self.attempt_done: list[dict] = []  # items finished (not incomplete) in the current attempt

    def feed_all(self, events: list[dict]) -> "Grammar":
        for event in events:
            self.feed(event)
        return self

    def feed(self, e: dict) -> None:
        n = len(self.events)
        where = f"event {n} ({e.get('type')})"
        assert e["sequence_number"] == n, f"{where}: sequence_number {e['sequence_number']}, expected {n}"
        self.events.append(e)
        kind = e["type"]
        if n == 0:
            assert kind == "response.created", f"{where}: a stream starts with response.created"
            self.response_id = e["response"]["id"]
            assert self.response_id.startswith("resp_"), self.response_id
            return
        assert kind != "response.created", f"{where}: response.created again"
        assert not (self.events[-2]["type"] in TERMINAL), f"{where}: after the terminal event"
        if "response" in e:
            assert e["response"]["id"] == self.response_id, f"{where}: another response id"
        if n == 1:
            assert kind == "response.in_progress", f"{where}: response.in_progress follows response.created"
            return
        if self.closing_after_resume:
            self._feed_while_closing(e, where)
            return
        handler = {
            RESUMED: self._resumed,
            "response.output_item.added": self._item_added,
            "response.content_part.added": self._part_added,
            "response.output_text.delta": self._text_delta,
            "response.output_text.done": self._text_done,
            "response.content_part.done": self._part_done,
            "response.function_call_arguments.delta": self._arguments_delta,
            "response.function_call_arguments.done": self._arguments_done,
            "response.output_item.done": self._item_done,
        }.get(kind)
        if handler:
            handler(e, where)
        elif kind in TERMINAL:
            assert e["response"]["status"] == TERMINAL[kind], f"{where}: status {e['response']['status']}"

    # ----- items ---------------------------------------------------------------

    def _open(self, e: dict, where: str) -> dict:
        item = self.items.get(e["output_index"])
        assert item is not None, f"{where}: output_index {e['output_index']} was never added"
        assert not item["closed"], f"{where}: output_index {e['output_index']} is already done"
        if "item_id" in e:
            assert e["item_id"] == item["id"], f"{where}: item_id {e['item_id']} is not {item['id']}"
        return item

    def _item_added(self, e: dict, where: str) -> None:
        index, item = e["output_index"], e["item"]
        assert index > self.last_index, f"{where}: output_index {index} is not fresh (last {self.last_index})"
        self.last_index = index
        assert item.get("id"), f"{where}: the item has no id"
        assert item["id"] not in self.item_ids, f"{where}: item id {item['id']} used twice"
        self.item_ids.add(item["id"])
        prefix = {"message": "msg_", "function_call": "fc_"}.get(item["type"])
        if prefix:
            assert item["id"].startswith(prefix), f"{where}: {item['type']} id {item['id']}"
        if item["type"] == "message":
            assert item["content"] == [], f"{where}: a message is added as a skeleton, without content"
        self.items[index] = {"id": item["id"], "type": item["type"], "closed": False, "parts": [],
                             "arguments": "", "arguments_done": None}

    def _part_added(self, e: dict, where: str) -> None:
        item = self._open(e, where)
        assert item["type"] == "message", f"{where}: content part on a {item['type']}"
        assert e["content_index"] == len(item["parts"]), f"{where}: content_index {e['content_index']}"
        assert all(p["closed"] for p in item["parts"]), f"{where}: the previous part is still open"
        assert e["part"]["type"] == "output_text" and e["part"]["text"] == "", f"{where}: {e['part']}"
        item["parts"].append({"text": "", "text_done": False, "closed": False})

    def _part(self, e: dict, where: str) -> dict:
        item = self._open(e, where)
        assert e["content_index"] < len(item["parts"]), f"{where}: content_index {e['content_index']} not added"
        part = item["parts"][e["content_index"]]
        assert not part["closed"], f"{where}: content part {e['content_index']} is already done"
        return part

    def _text_delta(self, e: dict, where: str) -> None:
        part = self._part(e, where)
        assert not part["text_done"], f"{where}: delta after output_text.done"
        part["text"] += e["delta"]

    def _text_done(self, e: dict, where: str) -> None:
        part = self._part(e, where)
        assert e["text"] == part["text"], f"{where}: text {e['text']!r} is not the deltas {part['text']!r}"
        part["text_done"] = True

    def _part_done(self, e: dict, where: str) -> None:
        part = self._part(e, where)
        assert part["text_done"], f"{where}: content_part.done before output_text.done"
        assert e["part"]["text"] == part["text"], f"{where}: part text is not the deltas"
        part["closed"] = True

    def _arguments_delta(self, e: dict, where: str) -> None:
        item = self._open(e, where)
        assert item["type"] == "function_call", f"{where}: arguments of a {item['type']}"
        assert item["arguments_done"] is None, f"{where}: delta after arguments.done"
        item["arguments"] += e["delta"]

    def _arguments_done(self, e: dict, where: str) -> None:
        item = self._open(e, where)
        assert item["type"] == "function_call", f"{where}: arguments of a {item['type']}"
        if item["arguments"]:
            assert e["arguments"] == item["arguments"], f"{where}: arguments are not the deltas"
        item["arguments_done"] = e["arguments"]

    def _item_done(self, e: dict, where: str) -> None:
        item, done = self._open(e, where), e["item"]
        assert done.get("id") == item["id"], f"{where}: done item id {done.get('id')} is not {item['id']}"
        assert done["type"] == item["type"], f"{where}: done item type {done['type']} is not {item['type']}"
        if item["type"] == "message":
            assert all(p["closed"] for p in item["parts"]), f"{where}: a content part is still open"
            texts = [c.get("text") for c in done["content"]]
            assert texts == [p["text"] for p in item["parts"]], f"{where}: content {texts} is not the deltas"
        if item["type"] == "function_call" and item["arguments_done"] is not None:
            assert done["arguments"] == item["arguments_done"], f"{where}: arguments changed"
        item["closed"] = True
        self.attempt_done.append(done)

    # ----- a resumed attempt ---------------------------------------------------

    def _resumed(self, e: dict, where: str) -> None:
        assert e["attempt_number"] > self.attempt, f"{where}: attempt {e['attempt_number']} after {self.attempt}"
        self.attempt = e["attempt_number"]
        self.closing_after_resume = True
        self.attempt_done = []

    def _feed_while_closing(self, e: dict, where: str) -> None:
        """After ``response.resumed``: the crashed attempt's open items end ``incomplete``,
        then ``response.in_progress`` starts the new attempt."""
        if e["type"] in ("response.output_text.done", "response.content_part.done"):
            # An open message's text and part may be closed first, with the text already sent.
            (self._text_done if e["type"] == "response.output_text.done" else self._part_done)(e, where)
            return
        if e["type"] == "response.output_item.done":
            item = self._open(e, where)
            assert e["item"]["id"] == item["id"], f"{where}: closes {e['item']['id']}, not {item['id']}"
            assert e["item"].get("status") == "incomplete", f"{where}: a crashed attempt's item ends incomplete"
            if item["type"] == "message":
                texts = [c.get("text") for c in e["item"]["content"]]
                assert texts == [p["text"] for p in item["parts"]], f"{where}: not the text already sent"
            item["closed"] = True
            return
        assert e["type"] == "response.in_progress", f"{where}: expected response.in_progress after response.resumed"
        still_open = [i["id"] for i in self.items.values() if not i["closed"]]
        assert not still_open, f"{where}: items of the crashed attempt left open: {still_open}"
        self.closing_after_resume = False

    # ----- the end ---------------------------------------------------------------

    def finish(self) -> dict:
        """The final Response, after checking the stream ended properly."""
        assert self.events, "no events"
        last = self.events[-1]
        assert last["type"] in TERMINAL, f"the stream ends with {last['type']}, not a terminal event"
        still_open = [i["id"] for i in self.items.values() if not i["closed"]]
        assert not still_open, f"items never done: {still_open}"
        final = last["response"]
        assert [(i["type"], i.get("id")) for i in final["output"]] == \
            [(i["type"], i.get("id")) for i in self.attempt_done], \
            "the final Response's output is not the items of the last attempt"
        for stored, streamed in zip(final["output"], self.attempt_done):
            if stored["type"] == "message":
                assert stored["content"] == streamed["content"]
        return final


def check_stream(payloads: list[str]) -> tuple[list[dict], dict]:
    """A whole stream from event 0: strictly parsed and in grammar -> (events, final Response)."""
    events = parse_strictly(payloads)
    return events, Grammar().feed_all(events).finish()
