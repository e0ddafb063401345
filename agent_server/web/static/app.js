// The agent's page: a chat whose every message runs as background + stream, and
// the caller's runs. No framework: plain DOM (helpers shared with memory.js in dom.js).
//
// Durability: each answer's state (what has been rendered, and the sequence
// number of the last event applied) is kept in localStorage with it. After a
// dropped connection, a reload or a server restart, the page asks for the
// events after that number (`starting_after`) and applies only numbers it has
// not applied yet, so every event shows exactly once.
"use strict";

(function () {
  const { elt, button } = window.pageDom;
  const STORE_KEY = "agent-chat-v1";
  const TERMINAL = new Set(["completed", "failed", "cancelled", "incomplete", "deleted", "lost"]);
  const RUNS_PAGE = 20;
  const RUNS_REFRESH_MS = 3000;
  const STALL_MS = 45000; // the server sends a keep-alive every 15 s
  const $ = (id) => document.getElementById(id);

  // ----- state ---------------------------------------------------------------------

  /** {turns: [{role: "user", text} | AssistantTurn]} */
  let chat = loadChat();
  /** The run shown instead of the chat (opened from the runs panel), or null. */
  let viewed = null;
  const followers = new Map(); // turn -> AbortController of its stream

  function loadChat() {
    try {
      const saved = JSON.parse(localStorage.getItem(STORE_KEY));
      if (saved && Array.isArray(saved.turns)) return saved;
    } catch (_) { /* a corrupt entry starts a new chat */ }
    return { turns: [] };
  }

  function saveChat() {
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify(chat));
    } catch (_) { /* storage full or disabled: the chat still works, only reload loses it */ }
  }

  function newAssistantTurn() {
    return { role: "assistant", responseId: null, cursor: -1, status: "sending", model: null,
             attempts: [{ number: 1, items: [] }], error: null, notice: null };
  }

  // ----- events -> turn ------------------------------------------------------------

  function currentAttempt(turn) {
    return turn.attempts[turn.attempts.length - 1];
  }

  // Deltas and the finished item go to the message being written. Not matched by id:
  // SDKs may give every message of a response the same (placeholder) id.
  function openMessage(attempt, itemId) {
    const last = attempt.items[attempt.items.length - 1];
    if (last && last.type === "message" && !last.done) return last;
    const message = { type: "message", id: itemId || null, text: "", done: false };
    attempt.items.push(message);
    return message;
  }

  function messageText(item) {
    return (item.content || []).filter((c) => c && typeof c.text === "string").map((c) => c.text).join("");
  }

  /** Apply one event to a turn; false if it was already applied (a repeat is ignored). */
  function applyEvent(turn, ev) {
    if (typeof ev.sequence_number === "number") {
      if (ev.sequence_number <= turn.cursor) return false;
      turn.cursor = ev.sequence_number;
    }
    const attempt = currentAttempt(turn);
    switch (ev.type) {
      case "response.created":
        turn.responseId = ev.response.id;
        turn.status = ev.response.status;
        turn.model = ev.response.model;
        if (ev.response.attempt_number > 0) attempt.number = ev.response.attempt_number;
        break;
      case "response.resumed":
        attempt.interrupted = true;
        turn.attempts.push({ number: ev.attempt_number, items: [], resumed: true });
        turn.status = "in_progress";
        break;
      case "response.output_text.delta":
        turn.status = "in_progress";
        openMessage(attempt, ev.item_id).text += ev.delta;
        break;
      case "response.output_item.done":
        turn.status = "in_progress";
        addItem(turn, attempt, ev.item || {});
        break;
      case "response.completed":
      case "response.failed":
      case "response.cancelled":
      case "response.incomplete":
        turn.status = ev.response.status;
        turn.error = ev.response.error || null;
        for (const item of attempt.items) if (item.type === "message") item.done = true;
        break;
      case "error":
        if (ev.code === "response_not_found") turn.status = "deleted";
        turn.error = { code: ev.code, message: ev.message };
        break;
      default:
        break; // other event types carry nothing this page shows
    }
    return true;
  }

  /** The call an output answers: in this attempt or, when a run resumed at its step, an earlier one;
   * else in an earlier turn (a call that waited for approval, answered by a later turn). */
  function findOpenCall(turn, callId) {
    const turns = viewed ? viewed.turns : chat.turns;
    const before = turns.includes(turn) ? turns.slice(0, turns.indexOf(turn)).reverse() : [];
    for (const candidate of [turn, ...before]) {
      if (candidate.role !== "assistant") continue;
      for (let index = candidate.attempts.length - 1; index >= 0; index--) {
        const call = candidate.attempts[index].items.find((i) => i.type === "call" && i.callId === callId && i.output === null);
        if (call) {
          if (candidate !== turn) changed(candidate);
          return call;
        }
      }
    }
    return null;
  }

  function addItem(turn, attempt, item) {
    if (item.type === "mcp_approval_request") return addApprovalRequest(attempt, item);
    if (item.type === "message") {
      const message = openMessage(attempt, item.id);
      message.text = messageText(item); // the finished item is authoritative
      message.done = true;
    } else if (item.type === "function_call") {
      let args = item.arguments;
      try { args = JSON.parse(item.arguments); } catch (_) { /* shown as sent */ }
      attempt.items.push({ type: "call", callId: item.call_id, name: item.name, args, output: null,
                           startedAt: Date.now() });
    } else if (item.type === "function_call_output") {
      const call = findOpenCall(turn, item.call_id);
      const output = typeof item.output === "string" ? item.output : JSON.stringify(item.output);
      if (call) {
        call.output = output;
        call.endedAt = Date.now();
      } else {
        attempt.items.push({ type: "call", callId: item.call_id, name: "tool", args: null, output });
      }
    }
  }

  // ----- server-sent events ----------------------------------------------------------

  class HttpError extends Error {
    constructor(status, message, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function httpError(response) {
    let message = response.statusText || "error";
    let code = null;
    try {
      const body = await response.json();
      if (body && body.error) ({ message, code } = body.error);
    } catch (_) { /* not our JSON (a proxy's page) */ }
    return new HttpError(response.status, message, code);
  }

  /** Read an SSE body, calling onEvent per JSON frame; true if it ended with [DONE]. */
  async function readEvents(response, onEvent, signal) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let stall = null;
    const resetStall = () => {
      clearTimeout(stall);
      // A connection that went silent without closing (network gone) is given up on.
      stall = setTimeout(() => reader.cancel(new Error("stalled")), STALL_MS);
    };
    resetStall();
    try {
      for (;;) {
        if (signal && signal.aborted) return false;
        const { value, done } = await reader.read();
        if (done) return false;
        resetStall();
        buffer += decoder.decode(value, { stream: true });
        let end;
        let batch = false;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = frame.split("\n").filter((l) => l.startsWith("data:"))
            .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
          if (!data) continue; // a keep-alive comment
          if (data === "[DONE]") return true;
          onEvent(JSON.parse(data));
          batch = true;
        }
        if (batch) onEvent(null); // end of a chunk: a moment to save and draw
      }
    } finally {
      clearTimeout(stall);
    }
  }

  // ----- sending and following -----------------------------------------------------

  function lastCompletedId() {
    for (let i = chat.turns.length - 1; i >= 0; i--) {
      const t = chat.turns[i];
      if (t.role === "assistant" && t.status === "completed" && t.responseId) return t.responseId;
    }
    return null;
  }

  async function send(text) {
    const body = { input: text };
    // Multi-turn: the conversation continues from the last completed answer.
    const previous = lastCompletedId();
    if (previous) body.previous_response_id = previous;
    return sendTurn(text, body);
  }

  /** Post one turn (shown as the user's ``text``) as background + stream, and follow its answer. */
  async function sendTurn(text, body) {
    hideError();
    body = { ...body, background: true, stream: true };
    const turn = newAssistantTurn();
    chat.turns.push({ role: "user", text }, turn);
    saveChat();
    render();
    const controller = new AbortController();
    followers.set(turn, controller);
    let response;
    try {
      response = await fetch("responses", {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify(body), signal: controller.signal,
      });
    } catch (err) {
      return failedToSend(turn, text, "The server could not be reached, so the message was not sent. " +
        "Check your connection and send it again.");
    }
    if (!response.ok) {
      const err = await httpError(response);
      return failedToSend(turn, text, describeError(err));
    }
    refreshRuns();
    await follow(turn, response, controller);
    refreshApprovals(); // a message declines what its conversation still waited on
  }

  function failedToSend(turn, text, message) {
    followers.delete(turn);
    chat.turns.splice(chat.turns.indexOf(turn) - 1, 2);
    saveChat();
    render();
    const input = $("input");
    if (!input.value) input.value = text; // nothing typed is lost
    showError(message);
  }

  function describeError(err) {
    if (err.status === 503) return `The server cannot run background tasks right now: ${err.message}`;
    if (err.status === 413) return `That message is too large for the server: ${err.message}`;
    if (err.status === 404) return "This response no longer exists (it was deleted, or it belongs to someone else).";
    if (err.status === 400) return `The server rejected the request: ${err.message}`;
    return `The server answered ${err.status}: ${err.message}`;
  }

  /** Stream a turn to its end, reconnecting after its last applied event whenever the stream breaks. */
  async function follow(turn, firstResponse, controller) {
    controller = controller || new AbortController();
    followers.set(turn, controller);
    let response = firstResponse;
    let delay = 1000;
    while (!TERMINAL.has(turn.status) && !controller.signal.aborted) {
      try {
        if (!response) {
          if (!turn.responseId) {
            // The POST's stream broke before the server said which response it created.
            turn.status = "lost";
            turn.error = { message: "The connection dropped before the server confirmed this message; " +
                           "if it was stored, it is in the Runs panel." };
            break;
          }
          const after = turn.cursor >= 0 ? `&starting_after=${turn.cursor}` : "";
          response = await fetch(`responses/${turn.responseId}?stream=true${after}`, { signal: controller.signal });
          if (!response.ok) throw await httpError(response);
        }
        setNotice(turn, null);
        await readEvents(response, (ev) => {
          if (ev === null) return changed(turn);
          applyEvent(turn, ev);
        }, controller.signal);
        changed(turn);
        delay = 1000;
      } catch (err) {
        if (controller.signal.aborted) break;
        if (err instanceof HttpError && (err.status === 404 || err.status === 400)) {
          turn.status = err.status === 404 ? "deleted" : "failed";
          turn.error = { message: describeError(err) };
          changed(turn);
          break;
        }
        const why = err instanceof HttpError ? describeError(err) : "Connection to the server lost.";
        setNotice(turn, `${why} Retrying in ${Math.round(delay / 1000)} s…`);
        await sleep(delay, controller.signal);
        delay = Math.min(delay * 2, 5000);
      }
      response = null;
    }
    setNotice(turn, null);
    followers.delete(turn);
    changed(turn);
    refreshRuns();
    // Other panels (memory.js) may show what the run changed.
    window.dispatchEvent(new CustomEvent("agent:run-ended", { detail: { responseId: turn.responseId } }));
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      // Coming back online retries at once instead of waiting out the delay.
      const wake = () => { clearTimeout(timer); resolve(); };
      window.addEventListener("online", wake, { once: true });
      if (signal) signal.addEventListener("abort", wake, { once: true });
    });
  }

  function setNotice(turn, text) {
    if (turn.notice === text) return;
    turn.notice = text;
    changed(turn);
    setConnection(text ? "Reconnecting…" : "");
  }

  // ----- rendering -----------------------------------------------------------------

  let drawPending = false;
  const dirty = new Set();

  function changed(turn) {
    if (chat.turns.includes(turn)) saveChat();
    dirty.add(turn);
    if (!drawPending) {
      drawPending = true;
      requestAnimationFrame(() => {
        drawPending = false;
        for (const t of dirty) redrawTurn(t);
        dirty.clear();
        updateComposer();
      });
    }
  }

  const turnNodes = new WeakMap();

  function render() {
    const list = $("messages");
    list.replaceChildren();
    const turns = viewed ? viewed.turns : chat.turns;
    for (const turn of turns) {
      const node = document.createElement("li");
      turnNodes.set(turn, node);
      list.append(node);
      redrawTurn(turn);
    }
    $("empty").hidden = turns.length > 0;
    list.hidden = turns.length === 0;
    $("viewing").hidden = !viewed;
    $("composer").hidden = !!viewed;
    if (viewed) $("viewing-id").textContent = viewed.id;
    updateComposer();
    scrollToEnd();
  }

  function redrawTurn(turn) {
    const node = turnNodes.get(turn);
    if (!node || !node.isConnected) return;
    const nearEnd = isNearEnd();
    node.className = `turn ${turn.role}`;
    if (turn.role === "user") {
      node.replaceChildren(elt("div", "bubble", [turn.text])); // the user's own text, never Markdown
    } else {
      node.replaceChildren(...assistantNodes(turn));
      node.dataset.status = turn.status;
      if (turn.responseId) node.dataset.responseId = turn.responseId;
    }
    if (nearEnd) scrollToEnd();
  }

  function assistantNodes(turn) {
    const nodes = [];
    turn.attempts.forEach((attempt, index) => {
      const last = index === turn.attempts.length - 1;
      if (attempt.resumed) {
        nodes.push(elt("div", "resumed", [`Resumed after an interruption: attempt ${attempt.number}`]));
      }
      const box = elt("div", attempt.interrupted ? "attempt interrupted" : "attempt");
      if (attempt.interrupted) box.append(elt("div", "attempt-label", [`Attempt ${attempt.number}, interrupted:`]));
      // A call without output in a finished turn never ran (or waits for an approval below).
      const live = last && !TERMINAL.has(turn.status);
      const idle = approvalsOf(turn).length ? "waits for approval" : "interrupted";
      for (const item of attempt.items) {
        box.append(item.type === "call" ? callNode(item, live, idle)
          : item.type === "approval" ? approvalNode(turn, item) : messageNode(item));
      }
      if (last && !TERMINAL.has(turn.status) && !attempt.items.some((i) => i.type === "message" && !i.done)) {
        box.append(elt("div", "thinking", [turn.status === "queued" ? "Queued…" : "Working…"]));
      }
      nodes.push(box);
    });
    const footer = [];
    if (turn.notice) footer.push(elt("div", "notice", [turn.notice]));
    if (turn.status === "cancelled") footer.push(elt("div", "status-line", ["Cancelled."]));
    if (turn.status === "incomplete") footer.push(elt("div", "status-line", ["Stopped before finishing (incomplete)."]));
    if (turn.status === "deleted") footer.push(elt("div", "status-line", ["This response was deleted."]));
    if (turn.error && turn.status !== "deleted") {
      footer.push(elt("div", "turn-error", [turn.error.message || turn.error.code || "The run failed."]));
    }
    return nodes.concat(footer);
  }

  function messageNode(item) {
    const node = elt("div", item.done ? "answer" : "answer streaming");
    node.append(window.renderMarkdown(item.text));
    return node;
  }

  function callNode(call, live, idle = "interrupted") {
    const running = call.output === null;
    const details = elt("div", running ? "tool running" : "tool");
    const args = call.args && typeof call.args === "object"
      ? Object.entries(call.args).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join(", ")
      : (call.args || "");
    const summary = elt("div", "tool-head", [elt("span", "tool-name", [call.name]), elt("span", "tool-args", [`(${args})`])]);
    if (running) {
      summary.append(elt("span", "tool-state", [live ? progressText(call) : idle]));
      if (live) details.append(progressBar(call));
    } else {
      summary.append(elt("span", "tool-state done", ["done"]));
      details.append(elt("pre", "tool-output", [call.output]));
    }
    details.prepend(summary);
    return details;
  }

  // A tool that says how long it takes (the research tool's `seconds`) gets a progress bar.
  function expectedSeconds(call) {
    const s = call.args && typeof call.args === "object" ? Number(call.args.seconds) : NaN;
    return s > 0 ? s : null;
  }

  function progressText(call) {
    const elapsed = Math.floor((Date.now() - (call.startedAt || Date.now())) / 1000);
    const expected = expectedSeconds(call);
    return expected ? `running: ${elapsed} s of about ${expected} s` : `running: ${elapsed} s`;
  }

  function progressBar(call) {
    const expected = expectedSeconds(call);
    const bar = document.createElement("progress");
    if (expected) {
      bar.max = expected;
      bar.value = Math.min((Date.now() - (call.startedAt || Date.now())) / 1000, expected);
    }
    return bar;
  }

  function isNearEnd() {
    const list = $("messages");
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function scrollToEnd() {
    const list = $("messages");
    list.scrollTop = list.scrollHeight;
  }

  // Running tool calls show their elapsed time.
  setInterval(() => {
    const turns = viewed ? viewed.turns : chat.turns;
    for (const turn of turns) {
      if (turn.role === "assistant" && !TERMINAL.has(turn.status) &&
          currentAttempt(turn).items.some((i) => i.type === "call" && i.output === null)) {
        dirty.add(turn);
        changed(turn);
      }
    }
  }, 1000);

  // ----- approvals -------------------------------------------------------------------

  function addApprovalRequest(attempt, item) {
    if (attempt.items.some((i) => i.type === "approval" && i.requestId === item.id)) return;
    let args = item.arguments;
    try { args = JSON.parse(item.arguments); } catch (_) { /* shown as sent */ }
    attempt.items.push({ type: "approval", requestId: item.id, name: item.name, args, server: item.server_label,
                         status: "pending", reason: null });
  }

  function approvalsOf(turn) {
    return turn.attempts.flatMap((a) => a.items.filter((i) => i.type === "approval"));
  }

  const APPROVAL_STATES = {
    pending: "waits for your approval", approved: "approved", rejected: "rejected",
    declined: "declined (the conversation moved on)", expired: "expired: it can no longer be answered",
  };

  function approvalNode(turn, item) {
    const box = elt("div", `approval ${item.status}`);
    box.dataset.requestId = item.requestId;
    const args = item.args && typeof item.args === "object"
      ? Object.entries(item.args).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join(", ")
      : (item.args || "");
    // Decided here but not sent yet: it goes with the turn's other requests once each has an answer.
    const decided = item.status === "pending" && item.decision && !viewed;
    const state = decided
      ? `you chose ${item.decision.approve ? "approve" : "reject"}: sent once the other requests have an answer`
      : APPROVAL_STATES[item.status] || item.status;
    box.append(elt("div", "tool-head", [elt("span", "tool-name", [item.name]), elt("span", "approval-state", [state])]));
    box.append(elt("pre", "approval-args", [args]));
    if (item.server && item.server !== "agent") box.append(elt("div", "muted small", [`from ${item.server}`]));
    if (item.status === "rejected" && item.reason) box.append(elt("div", "muted small", [`Reason: ${item.reason}`]));
    if (decided) {
      const change = button("Change", () => { item.decision = null; changed(turn); });
      box.append(elt("div", "approval-actions", [change]));
    } else if (item.status === "pending" && !viewed && turn.status === "completed") {
      const reason = elt("input", "approval-reason");
      reason.placeholder = "Reason (optional)";
      reason.setAttribute("aria-label", "Reason");
      // Kept on the item: the turn may be drawn again while the reason is typed.
      reason.value = item.draft || "";
      reason.addEventListener("input", () => { item.draft = reason.value; });
      // The reason is read from the item, not this input: a redraw may have replaced the input typed in.
      const approve = button("Approve", () => answerApproval(turn, item, true, (item.draft || "").trim()));
      approve.className = "primary";
      const reject = button("Reject", () => answerApproval(turn, item, false, (item.draft || "").trim()));
      box.append(elt("div", "approval-actions", [approve, reject, reason]));
    }
    return box;
  }

  /** Decide one request. A response's requests are answered together (an answer that leaves one
   * out declines it), so the decisions wait until each pending request of the turn has one; then
   * they go as one new turn continuing the response that asked, and the page reads where they stand. */
  async function answerApproval(turn, item, approve, reason) {
    if (activeTurn()) return showError("Wait for the current answer to finish, then answer the request.");
    item.decision = { approve, reason: reason || null };
    const pending = approvalsOf(turn).filter((i) => i.status === "pending");
    if (pending.some((i) => !i.decision)) return changed(turn);
    const input = pending.map((i) => ({
      type: "mcp_approval_response", approval_request_id: i.requestId, approve: i.decision.approve,
      ...(i.decision.reason ? { reason: i.decision.reason } : {}),
    }));
    const said = pending.map((i) => `${i.decision.approve ? "Approved" : "Rejected"} ${i.name}`
                                    + (i.decision.reason ? `: ${i.decision.reason}` : "")).join("; ");
    for (const i of pending) {
      i.reason = i.decision.reason;
      i.decision = null;
    }
    await sendTurn(said, { input, previous_response_id: turn.responseId });
    await refreshApprovals(turn);
  }

  /** Where the chat's requests stand on the server (answered here or elsewhere, declined, expired):
   * those still pending here, and every one of ``also``. */
  async function refreshApprovals(also) {
    for (const turn of chat.turns) {
      if (turn.role !== "assistant" || !turn.responseId) continue;
      if (turn !== also && !approvalsOf(turn).some((i) => i.status === "pending")) continue;
      try {
        const response = await fetch(`responses/${turn.responseId}`);
        if (!response.ok) continue;
        const states = (await response.json()).approval_requests || [];
        let moved = false;
        for (const item of approvalsOf(turn)) {
          const state = states.find((s) => s.id === item.requestId);
          if (state && state.status !== item.status) {
            item.status = state.status;
            moved = true;
          }
        }
        if (moved) changed(turn);
      } catch (_) { /* the next refresh tries again */ }
    }
  }

  // ----- composer ------------------------------------------------------------------

  function activeTurn() {
    const last = chat.turns[chat.turns.length - 1];
    return last && last.role === "assistant" && !TERMINAL.has(last.status) ? last : null;
  }

  function updateComposer() {
    const busy = !!activeTurn();
    $("send").disabled = busy;
    $("stop").hidden = !busy;
  }

  function submit() {
    const input = $("input");
    const text = input.value.trim();
    if (!text || activeTurn()) return;
    input.value = "";
    send(text);
  }

  // ----- errors and connection ----------------------------------------------------

  function showError(message) {
    $("error-text").textContent = message;
    $("error").hidden = false;
  }

  function hideError() {
    $("error").hidden = true;
  }

  function setConnection(text) {
    $("conn").textContent = text || (navigator.onLine ? "" : "Offline");
  }

  async function checkHealth() {
    try {
      const response = await fetch("health");
      const health = await response.json();
      if (!health.background_mode) {
        const why = (health.database && health.database.error) || "the database is unavailable";
        showError(`Background mode is unavailable, so messages cannot be sent yet: ${why}`);
      }
    } catch (_) {
      setConnection("Cannot reach the server");
    }
  }

  // ----- runs panel ----------------------------------------------------------------

  let runs = [];
  let runsHasMore = false;
  let runsFetchedAt = Date.now();
  let runsInFlight = false;
  const confirmingDelete = new Set(); // ids whose Delete was clicked once

  async function fetchRuns(after) {
    const params = new URLSearchParams({ limit: String(after ? RUNS_PAGE : Math.max(RUNS_PAGE, Math.min(runs.length, 100))) });
    const status = $("status-filter").value;
    if (status === "waiting") params.set("waiting", "approval");
    else if (status) params.set("status", status);
    if (after) params.set("after", after);
    const response = await fetch(`responses?${params}`);
    if (!response.ok) throw await httpError(response);
    return response.json();
  }

  async function refreshRuns() {
    if (runsInFlight) return;
    runsInFlight = true;
    try {
      const page = await fetchRuns(null);
      runs = page.data;
      runsHasMore = page.has_more;
      runsFetchedAt = Date.now();
      $("runs-error").hidden = true;
      drawRuns();
    } catch (err) {
      const box = $("runs-error");
      box.textContent = err instanceof HttpError ? describeError(err) : "Cannot reach the server; the list will refresh when it is back.";
      box.hidden = false;
    } finally {
      runsInFlight = false;
    }
  }

  async function moreRuns() {
    if (!runs.length) return;
    try {
      const page = await fetchRuns(runs[runs.length - 1].id);
      runs = runs.concat(page.data);
      runsHasMore = page.has_more;
      drawRuns();
    } catch (err) {
      showError(err instanceof HttpError ? describeError(err) : "Cannot reach the server.");
    }
  }

  function formatStart(epoch) {
    const date = new Date(epoch * 1000);
    const today = new Date().toDateString() === date.toDateString();
    return today ? date.toLocaleTimeString() : date.toLocaleString();
  }

  function formatDuration(seconds) {
    if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
    const m = Math.floor(seconds / 60);
    if (m < 60) return `${m} min ${Math.floor(seconds % 60)} s`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  // Running durations tick on between refreshes.
  function runDuration(run) {
    return run.duration_seconds + (TERMINAL.has(run.status) ? 0 : (Date.now() - runsFetchedAt) / 1000);
  }

  function tickDurations() {
    for (const node of $("run-list").children) {
      const run = runs.find((r) => r.id === node.dataset.responseId);
      if (run && !TERMINAL.has(run.status)) node.querySelector(".run-duration").textContent = formatDuration(runDuration(run));
    }
  }

  function drawRuns() {
    const list = $("run-list");
    list.replaceChildren();
    for (const run of runs) list.append(runNode(run));
    $("runs-empty").hidden = runs.length > 0;
    $("more").hidden = !runsHasMore;
  }

  function runNode(run) {
    const running = !TERMINAL.has(run.status);
    const li = elt("li", "run");
    li.dataset.responseId = run.id;
    li.dataset.status = run.status;
    // Running durations tick on between refreshes.
    const title = elt("button", "run-title", [run.input_preview || "(no text input)"]);
    title.type = "button";
    title.title = "Open this run";
    title.addEventListener("click", () => openRun(run));
    const meta = elt("div", "run-meta", [
      elt("span", `badge ${run.status}`, [run.status.replace("_", " ")]),
      elt("span", "run-start", [formatStart(run.started_at || run.created_at)]),
      elt("span", "run-duration", [formatDuration(runDuration(run))]),
      elt("span", "run-attempt", [`attempt ${run.attempt_number}`]),
    ]);
    if (run.pending_approvals) meta.prepend(elt("span", "badge waiting", ["waits for you"]));
    const actions = elt("div", "run-actions");
    actions.append(button("Open", () => openRun(run)));
    if (running) actions.append(button("Cancel", () => runAction(run, "cancel")));
    const del = button(confirmingDelete.has(run.id) ? "Really delete?" : "Delete", () => {
      if (confirmingDelete.has(run.id)) return runAction(run, "delete");
      confirmingDelete.add(run.id);
      del.textContent = "Really delete?";
    });
    actions.append(del);
    li.append(title, meta, actions);
    return li;
  }

  async function runAction(run, action) {
    const url = action === "cancel" ? `responses/${run.id}/cancel` : `responses/${run.id}`;
    try {
      const response = await fetch(url, { method: action === "cancel" ? "POST" : "DELETE" });
      if (!response.ok) throw await httpError(response);
    } catch (err) {
      showError(err instanceof HttpError ? describeError(err) : `Cannot reach the server to ${action} the run.`);
    }
    if (action === "delete" && viewed && viewed.id === run.id) closeRun();
    refreshRuns();
  }

  // ----- watching or replaying one run ---------------------------------------------

  function openRun(run) {
    closeRun();
    const turn = newAssistantTurn();
    turn.status = run.status === "queued" ? "queued" : "in_progress";
    viewed = { id: run.id, turns: [{ role: "user", text: run.input_preview || "" }, turn] };
    turn.responseId = run.id;
    render();
    // From the first event: a replay of the whole log, then live if it is still running.
    follow(turn, null, null);
  }

  function closeRun() {
    if (!viewed) return;
    for (const turn of viewed.turns) {
      const controller = followers.get(turn);
      if (controller) controller.abort();
    }
    viewed = null;
    render();
  }

  // ----- start-up ------------------------------------------------------------------

  function start() {
    const input = $("input");
    input.addEventListener("keydown", (e) => {
      // Enter sends; Shift+Enter (or Enter while composing with an IME) adds a line.
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        submit();
      }
    });
    $("composer").addEventListener("submit", (e) => { e.preventDefault(); submit(); });
    $("stop").addEventListener("click", () => {
      const turn = activeTurn();
      if (turn && turn.responseId) runAction({ id: turn.responseId }, "cancel");
    });
    $("new-chat").addEventListener("click", () => {
      for (const controller of followers.values()) controller.abort();
      closeRun();
      chat = { turns: [] };
      saveChat();
      hideError();
      render();
    });
    $("back-to-chat").addEventListener("click", closeRun);
    $("status-filter").addEventListener("change", () => { runs = []; refreshRuns(); });
    $("more").addEventListener("click", moreRuns);
    $("error-close").addEventListener("click", hideError);
    window.addEventListener("online", () => { setConnection(""); refreshRuns(); });
    window.addEventListener("offline", () => setConnection("Offline"));

    render();
    // Reattach to every answer that was still running when the page was left.
    for (const turn of chat.turns) {
      if (turn.role === "assistant" && !TERMINAL.has(turn.status)) follow(turn, null, null);
    }
    checkHealth();
    refreshRuns();
    refreshApprovals();
    setInterval(() => { if (!document.hidden) refreshRuns(); }, RUNS_REFRESH_MS);
    setInterval(() => { if (!document.hidden) tickDurations(); }, 1000);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshRuns(); });
    input.focus();
  }

  start();
})();
