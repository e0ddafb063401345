"""Conversations: which stored conversation a new response joins, and the
history its handler sees.

A conversation is a numbered list of items in Postgres (``conversation_items``).
A response joins one at most; the statement that ends it (``finish_responses``)
appends its input and the output it finally committed, in the same
transaction, so a crashed attempt's partial output never joins. The stored
request keeps only the new input; the handler's input (history, then the new
input) is built when an attempt starts, from the first ``history_end`` items,
fixed when the first attempt started, so a resumed attempt sees the
conversation as it was then. A failed, cancelled or timed-out response
contributes what it committed: its input and the output items it finished.

A request names its conversation in one of three ways, checked in this order:

- ``conversation`` (OpenAI): an id from ``POST /conversations``;
- ``previous_response_id`` (OpenAI): the conversation of that response, if it
  is that conversation's newest response; continuing an older one branches:
  a new conversation starts with a copy of the items up to it;
- a Databricks session key: ``custom_inputs.thread_id``, else
  ``custom_inputs.session_id``, else ``context.conversation_id``: one
  conversation per caller and key, created on first use.
"""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from ..errors import ApiError
from ..settings import MULTITASK_STRATEGIES
from ..ids import CONVERSATION_ID, RESPONSE_ID, new_conversation_id
from ..storage.models import ApprovalAnswer, ConversationRow, ResponseRow, Status
from ..storage.store import Store

#: What a new message does while an earlier response of its conversation is unfinished.
STRATEGIES = MULTITASK_STRATEGIES
STRATEGY_FIELD = "multitask_strategy"
MAX_SESSION_KEY = 512
#: A longer conversation is refused (400): every turn hands all of it to the handler.
MAX_CONVERSATION_ITEMS = 10_000


@dataclass(frozen=True)
class HistoryRef:
    """The conversation items an attempt's handler sees before the stored input: the first ``end``."""

    conversation_id: str
    end: int


class ConversationBusy(Exception):
    """A new turn was refused: another turn of its conversation is still queued or running."""

    def __init__(self, response_id: str, status: Status):
        super().__init__(f"{response_id} is {status.value}")
        self.response_id = response_id
        self.status = status


@dataclass(frozen=True)
class Turn:
    """A new response's place in a stored conversation."""

    conversation_id: str
    strategy: str  # one of STRATEGIES
    # Answers to approval requests of the response it continues (``asked_by``), claimed when it is stored.
    answers: tuple[ApprovalAnswer, ...] = ()
    asked_by: str | None = None

    def status_for(self, unfinished: list[tuple[str, Status]], *, start_here: bool) -> Status:
        """The new turn's status, given its conversation's unfinished turns: it starts now only if
        none is unfinished (and the worker has room), else it waits behind them, or with the
        ``reject`` strategy it is refused (:class:`ConversationBusy`)."""
        if unfinished and self.strategy == "reject":
            raise ConversationBusy(*unfinished[0])
        return Status.IN_PROGRESS if start_here and not unfinished else Status.QUEUED


def conversation_not_found(conversation_id: str, param: str | None = "conversation") -> ApiError:
    return ApiError(404, f"Conversation with id '{conversation_id[:80]}' not found.",
                    code="conversation_not_found", param=param)


def strategy_of(value: Any, default: str) -> str:
    if value is None:
        return default
    if value not in STRATEGIES:
        raise ApiError(400, f"{STRATEGY_FIELD} must be one of {', '.join(STRATEGIES)}, got {str(value)[:40]!r}.",
                       code="invalid_parameter", param=STRATEGY_FIELD)
    return value


def conversation_id_of(value: Any) -> str:
    """The ``conversation`` field: an id, or ``{"id": ...}`` (both as the openai client sends them)."""
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str) or not CONVERSATION_ID.match(value):
        raise ApiError(400, f"conversation must be a conversation id ('conv_' followed by 32 lowercase hex "
                       f"digits) or {{\"id\": ...}}, got {str(value)[:80]!r}.", code="invalid_parameter",
                       param="conversation")
    return value


def session_key_of(request: dict[str, Any]) -> str | None:
    """The Databricks session key of a (validated) request, if it has one."""
    custom_inputs = request.get("custom_inputs") or {}
    context = request.get("context") or {}
    for key in (custom_inputs.get("thread_id"), custom_inputs.get("session_id"), context.get("conversation_id")):
        if isinstance(key, (str, int)) and not isinstance(key, bool) and str(key):
            key = str(key)
            if len(key) > MAX_SESSION_KEY:
                raise ApiError(400, f"A session id (custom_inputs.thread_id / session_id, context.conversation_id) "
                               f"may be at most {MAX_SESSION_KEY} characters; got {len(key)}.",
                               code="invalid_parameter", param="custom_inputs")
            return key
    return None


def _check_length(found: ConversationRow, param: str) -> None:
    if found.item_count >= MAX_CONVERSATION_ITEMS:
        raise ApiError(400, f"Conversation {found.conversation_id} holds {found.item_count} items; at most "
                       f"{MAX_CONVERSATION_ITEMS} are continued. Start a new conversation (with a summary of "
                       "this one as its first input, if the agent needs it).", code="conversation_too_long",
                       param=param)


def _invalid_previous(message: str) -> ApiError:
    return ApiError(400, message, code="invalid_previous_response", param="previous_response_id")


def _check_exclusive(conversation: Any, previous_response_id: Any) -> None:
    if conversation is not None and previous_response_id is not None:
        raise ApiError(400, "Send either 'conversation' or 'previous_response_id', not both: a response "
                       "continues one conversation.", code="invalid_parameter", param="previous_response_id")


async def turn_for(store: Store, owner: str, *, conversation: Any, previous_response_id: Any,
                   request: dict[str, Any], strategy: str, answers: list[ApprovalAnswer] = ()) -> Turn | None:
    """The stored conversation a new stored request joins (None: it has none); ``answers`` answer
    approval requests of ``previous_response_id``.

    Raises the 4xx of a bad or foreign id before storing anything.
    """
    _check_exclusive(conversation, previous_response_id)
    if conversation is not None:
        found = await _named_conversation(store, conversation, owner)
        _check_length(found, "conversation")
        return Turn(found.conversation_id, strategy)
    if previous_response_id is not None:
        previous = await _previous_response(store, previous_response_id, owner)
        return Turn(await _continuing(store, previous, owner), strategy, tuple(answers), previous.response_id)
    key = session_key_of(request)
    if key is None:
        return None
    found = await store.session_conversation(owner, key)
    if found is None:
        # Two first requests of a session at once: one creates it, the other reads it.
        found = (await store.create_conversation(new_conversation_id(), owner, session_key=key)
                 or await store.session_conversation(owner, key))
    _check_length(found, "custom_inputs" if request.get("custom_inputs") else "context")
    return Turn(found.conversation_id, strategy)


async def unstored_history(store: Store, owner: str, *, conversation: Any, previous_response_id: Any,
                           request: dict[str, Any]) -> list[dict[str, Any]]:
    """The history an unstored request (``store: false``) sees, read now; it creates and joins nothing."""
    _check_exclusive(conversation, previous_response_id)
    if conversation is not None:
        found = await _named_conversation(store, conversation, owner)
        return await store.conversation_history(found.conversation_id, 0, found.item_count)
    if previous_response_id is not None:
        previous = await _previous_response(store, previous_response_id, owner)
        found = (await store.get_conversation(previous.conversation_id, owner)
                 if previous.conversation_id is not None else None)
        if found is None:
            return _committed_by(previous)
        end = (found.item_count if found.last_response_id == previous.response_id
               else await store.response_items_end(found.conversation_id, previous.response_id))
        return await store.conversation_history(found.conversation_id, 0, end)
    key = session_key_of(request)
    found = await store.session_conversation(owner, key) if key is not None else None
    return await store.conversation_history(found.conversation_id, 0, found.item_count) if found else []


async def _named_conversation(store: Store, conversation: Any, owner: str) -> ConversationRow:
    """The ``conversation`` field's conversation, if ``owner``'s; else 404."""
    conversation_id = conversation_id_of(conversation)
    found = await store.get_conversation(conversation_id, owner)
    if found is None:
        raise conversation_not_found(conversation_id)
    return found


async def _previous_response(store: Store, previous_response_id: Any, owner: str) -> ResponseRow:
    if not isinstance(previous_response_id, str) or not RESPONSE_ID.match(previous_response_id):
        raise _invalid_previous(f"previous_response_id {str(previous_response_id)[:80]!r} is not a response id "
                                "('resp_' followed by 32 lowercase hex digits).")
    row = await store.get_response(previous_response_id, owner)
    if row is None:
        raise _invalid_previous(f"No response with id '{previous_response_id}' found to continue.")
    if not row.status.is_terminal:
        raise _invalid_previous(f"Response '{previous_response_id}' is still {row.status.value}; continue it once "
                                "it has finished (or cancel it first).")
    return row


async def _continuing(store: Store, previous: ResponseRow, owner: str) -> str:
    """The conversation a continuation of ``previous`` joins: its own while ``previous`` is its
    newest response, else a branch holding the items up to ``previous``."""
    if previous.conversation_id is not None:
        found = await store.get_conversation(previous.conversation_id, owner)
        if found is not None:
            _check_length(found, "previous_response_id")
            if found.last_response_id == previous.response_id:
                return found.conversation_id
            end = await store.response_items_end(found.conversation_id, previous.response_id)
            branch = await store.branch_conversation(new_conversation_id(), owner, source_id=found.conversation_id,
                                                     item_count=end)
            return branch.conversation_id
    # Stored without a conversation (by a version before conversations, whose input holds the
    # whole history; or its conversation was deleted): start one from what it committed.
    started = await store.create_conversation(new_conversation_id(), owner, items=_committed_by(previous))
    return started.conversation_id


def _committed_by(previous: ResponseRow) -> list[dict[str, Any]]:
    """What a response without a conversation would have added to one (as finish_responses does)."""
    items = [item for item in previous.request.get("input") or [] if item.get("role") not in ("system", "developer")]
    return [*items, *(previous.output or [])]


@functools.cache
def _input_items() -> TypeAdapter:
    """The handler's input items, as MLflow's request model parses them. Built on first use: the
    server starts before MLflow is imported (agent_runtime.py), and a worker reads a history only
    once it is."""
    from mlflow.types.responses import ResponsesAgentRequest

    return TypeAdapter(ResponsesAgentRequest.model_fields["input"].annotation)


class HistoryCache:
    """A worker's parsed conversation items, so turn N reads and parses only the items added since
    this worker last ran a turn of that conversation, not all N turns again.

    Safe because items never change once written (positions are fixed; a deleted conversation's
    id is never reused, and a branch gets a new id): a cached prefix stays valid.
    """

    def __init__(self, store: Store, max_conversations: int = 256, max_items: int = 100_000):
        self.store = store
        self.max_conversations = max_conversations
        self.max_items = max_items  # bounds the memory: the least recently used conversations go first
        self._items: OrderedDict[str, list[Any]] = OrderedDict()
        self._count = 0

    async def items(self, history: HistoryRef) -> list[Any]:
        """The first ``history.end`` items of the conversation, parsed (copies: a handler may change them)."""
        cached = self._items.pop(history.conversation_id, [])
        self._count -= len(cached)
        if len(cached) < history.end:
            # One index range read of what this worker has not seen yet.
            rows = await self.store.conversation_history(history.conversation_id, len(cached), history.end)
            parsed = _input_items().validate_python(rows)
            if len(rows) != history.end - len(cached):  # deleted meanwhile: use it, keep nothing
                return [item.model_copy() for item in [*cached, *parsed]]
            cached = [*cached, *parsed]
        self._items[history.conversation_id] = cached
        self._count += len(cached)
        while self._items and (len(self._items) > self.max_conversations or self._count > self.max_items):
            _, dropped = self._items.popitem(last=False)
            self._count -= len(dropped)
        return [item.model_copy() for item in cached[:history.end]]
