"""How a stored event is encoded: compact UTF-8 JSON, whatever a handler put in it."""

from __future__ import annotations

import json

import pytest

from agent_server.long_running.events.response_object import event_json


def test_an_event_is_stamped_and_encoded_compactly_keeping_non_ascii_text():
    data = event_json({"type": "response.output_text.delta", "delta": "héllo – 東京 🙂", "emitted_at": 0.1},
                      7, "resp_1")
    assert " " not in data.replace("héllo – 東京 🙂", "")
    assert "東京" in data  # not escaped
    assert json.loads(data) == {"type": "response.output_text.delta", "delta": "héllo – 東京 🙂",
                                "emitted_at": 0.1, "sequence_number": 7, "response_id": "resp_1"}


@pytest.mark.parametrize("odd", [{1: "integer key"}, 2**70])
def test_what_the_fast_encoder_refuses_is_encoded_as_the_standard_library_does(odd):
    event = {"type": "custom", "value": odd}
    assert event_json(event, 0, "resp_1") == json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def test_a_value_json_cannot_hold_is_refused_with_a_type_error():
    with pytest.raises(TypeError):
        event_json({"type": "custom", "value": object()}, 0, "resp_1")
