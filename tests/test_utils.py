"""replace_fake_id and init_lakebase_config: every mode, the priority, every error."""

from __future__ import annotations

import dataclasses

import pytest

from agent_server.utils import (
    FAKE_RESPONSES_ID,
    LakebaseConfig,
    LakebaseConfigError,
    init_lakebase_config,
    replace_fake_id,
)

REAL = "resp_0123456789abcdef0123456789abcdef"


# ----- replace_fake_id ------------------------------------------------------------

def test_fake_id_constant_is_the_agents_sdk_one():
    from agents.models.fake_id import FAKE_RESPONSES_ID as sdk_id

    assert FAKE_RESPONSES_ID == sdk_id == "__fake_id__"


def test_replaces_both_placeholders_in_nested_dicts_and_lists():
    event = {
        "type": "response.output_item.done",
        "item": {"id": "__fake_id__", "content": [{"type": "output_text", "text": "hi", "annotations": []}]},
        "items": [{"id": "resp_placeholder_item_1"}, ["resp_placeholder_call_x", "__fake_id__"]],
    }
    assert replace_fake_id(event, REAL) == {
        "type": "response.output_item.done",
        "item": {"id": REAL, "content": [{"type": "output_text", "text": "hi", "annotations": []}]},
        "items": [{"id": REAL}, [REAL, REAL]],
    }


def test_top_level_strings():
    assert replace_fake_id("__fake_id__", REAL) == REAL
    assert replace_fake_id("resp_placeholder_", REAL) == REAL
    assert replace_fake_id("resp_placeholder_abc", REAL) == REAL


def test_leaves_everything_else_untouched():
    event = {
        "type": "response.output_text.delta",
        "delta": "the id __fake_id__ and resp_placeholder_x appear in text",
        "item_id": "msg_123",
        "other": "x__fake_id__",
        "prefix_later": "my_resp_placeholder_1",
        "n": 3, "f": 1.5, "flag": True, "none": None,
        "tuple": ("__fake_id__",),  # only dicts, lists and strings are walked
    }
    assert replace_fake_id(event, REAL) == event
    for value in (3, 1.5, None, True, ("__fake_id__",)):
        assert replace_fake_id(value, REAL) == value


def test_does_not_mutate_its_input():
    event = {"item": {"id": "__fake_id__"}, "list": ["__fake_id__"]}
    replace_fake_id(event, REAL)
    assert event == {"item": {"id": "__fake_id__"}, "list": ["__fake_id__"]}


def test_keys_are_not_replaced():
    assert replace_fake_id({"__fake_id__": "__fake_id__"}, REAL) == {"__fake_id__": REAL}


# ----- init_lakebase_config -----------------------------------------------------

ENDPOINT = "projects/p/branches/b/endpoints/e"


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, LakebaseConfig()),
        ({"LAKEBASE_AUTOSCALING_ENDPOINT": ENDPOINT}, LakebaseConfig(autoscaling_endpoint=ENDPOINT)),
        ({"LAKEBASE_AUTOSCALING_PROJECT": "p", "LAKEBASE_AUTOSCALING_BRANCH": "b"},
         LakebaseConfig(autoscaling_project="p", autoscaling_branch="b")),
        ({"LAKEBASE_INSTANCE_NAME": "inst"}, LakebaseConfig(instance_name="inst")),
    ],
    ids=["none", "endpoint", "project+branch", "instance"],
)
def test_each_mode(env, expected):
    assert init_lakebase_config(env) == expected


def test_priority_endpoint_over_project_branch_over_instance():
    everything = {
        "LAKEBASE_AUTOSCALING_ENDPOINT": ENDPOINT,
        "LAKEBASE_AUTOSCALING_PROJECT": "p",
        "LAKEBASE_AUTOSCALING_BRANCH": "b",
        "LAKEBASE_INSTANCE_NAME": "inst",
    }
    # Only the winning mode's fields are set.
    assert init_lakebase_config(everything) == LakebaseConfig(autoscaling_endpoint=ENDPOINT)
    without_endpoint = {k: v for k, v in everything.items() if k != "LAKEBASE_AUTOSCALING_ENDPOINT"}
    assert init_lakebase_config(without_endpoint) == LakebaseConfig(autoscaling_project="p", autoscaling_branch="b")


def test_endpoint_wins_over_a_half_pair():
    env = {"LAKEBASE_AUTOSCALING_ENDPOINT": ENDPOINT, "LAKEBASE_AUTOSCALING_PROJECT": "p"}
    assert init_lakebase_config(env) == LakebaseConfig(autoscaling_endpoint=ENDPOINT)


def test_empty_and_blank_values_count_as_unset():
    env = {
        "LAKEBASE_AUTOSCALING_ENDPOINT": "",
        "LAKEBASE_AUTOSCALING_PROJECT": "  ",
        "LAKEBASE_AUTOSCALING_BRANCH": "",
        "LAKEBASE_INSTANCE_NAME": " inst ",
    }
    assert init_lakebase_config(env) == LakebaseConfig(instance_name="inst")


def test_project_without_branch_names_the_missing_branch():
    with pytest.raises(LakebaseConfigError) as err:
        init_lakebase_config({"LAKEBASE_AUTOSCALING_PROJECT": "p", "LAKEBASE_INSTANCE_NAME": "inst"})
    message = str(err.value)
    assert "LAKEBASE_AUTOSCALING_PROJECT is set ('p')" in message
    assert "LAKEBASE_AUTOSCALING_BRANCH is missing" in message


def test_branch_without_project_names_the_missing_project():
    with pytest.raises(LakebaseConfigError) as err:
        init_lakebase_config({"LAKEBASE_AUTOSCALING_BRANCH": "b"})
    message = str(err.value)
    assert "LAKEBASE_AUTOSCALING_BRANCH is set ('b')" in message
    assert "LAKEBASE_AUTOSCALING_PROJECT is missing" in message


def test_databricks_app_without_lakebase_lists_the_three_options():
    with pytest.raises(LakebaseConfigError) as err:
        init_lakebase_config({"DATABRICKS_APP_NAME": "my-app"})
    message = str(err.value)
    assert "'my-app'" in message
    for option in ("LAKEBASE_AUTOSCALING_ENDPOINT", "LAKEBASE_AUTOSCALING_PROJECT together with "
                   "LAKEBASE_AUTOSCALING_BRANCH", "LAKEBASE_INSTANCE_NAME"):
        assert option in message


def test_databricks_app_with_lakebase_or_database_url_is_fine():
    assert init_lakebase_config({"DATABRICKS_APP_NAME": "a", "LAKEBASE_INSTANCE_NAME": "i"}).instance_name == "i"
    assert init_lakebase_config({"DATABRICKS_APP_NAME": "a", "DATABASE_URL": "postgresql://x"}) == LakebaseConfig()


def test_reads_os_environ_by_default(monkeypatch):
    for name in ("LAKEBASE_AUTOSCALING_ENDPOINT", "LAKEBASE_AUTOSCALING_PROJECT", "LAKEBASE_AUTOSCALING_BRANCH",
                 "DATABRICKS_APP_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAKEBASE_INSTANCE_NAME", "from-env")
    assert init_lakebase_config() == LakebaseConfig(instance_name="from-env")


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        LakebaseConfig().instance_name = "x"  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(LakebaseConfig)] == [
        "instance_name", "autoscaling_endpoint", "autoscaling_project", "autoscaling_branch"]
