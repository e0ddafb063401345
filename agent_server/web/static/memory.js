// The memories panel: what the agent remembers about the caller across conversations
// (GET /memories), each with Delete (DELETE /memories/{id}), and Forget all (DELETE /memories).
// Apart from app.js: it only reads and erases memories. It refreshes when the page opens,
// when a run ends (app.js sends "agent:run-ended" on window), when the tab comes back, and
// now and then (a memory saved in another tab). Memory text is shown as text, never as HTML.
"use strict";

(function () {
  const { elt, button } = window.pageDom;
  const PAGE = 50;
  const REFRESH_MS = 15000;
  const $ = (id) => document.getElementById(id);

  let memories = [];
  let hasMore = false;
  let inFlight = false;
  const confirming = new Set(); // ids whose Delete was clicked once
  let confirmingAll = false;

  async function request(path, method) {
    let response;
    try {
      response = await fetch(path, { method: method || "GET" });
    } catch (_) {
      throw new Error("Cannot reach the server; the list will refresh when it is back.");
    }
    let body = null;
    try { body = await response.json(); } catch (_) { /* not our JSON (a proxy's page) */ }
    if (!response.ok) {
      const error = body && body.error;
      if (response.status === 403) throw new Error((error && error.message) || "Memory needs a signed-in user.");
      if (response.status === 503) throw new Error(`Memory is unavailable right now: ${error ? error.message : response.statusText}`);
      throw new Error(`The server answered ${response.status}: ${error ? error.message : response.statusText}`);
    }
    return body;
  }

  function showError(message) {
    const box = $("memories-error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  async function refresh() {
    if (inFlight) return;
    inFlight = true;
    try {
      const page = await request(`memories?limit=${Math.max(PAGE, Math.min(memories.length, 100))}`);
      memories = page.data;
      hasMore = page.has_more;
      showError(null);
      draw();
    } catch (err) {
      showError(err.message);
    } finally {
      inFlight = false;
    }
  }

  async function more() {
    if (!memories.length) return;
    try {
      const page = await request(`memories?limit=${PAGE}&after=${encodeURIComponent(memories[memories.length - 1].id)}`);
      memories = memories.concat(page.data);
      hasMore = page.has_more;
      draw();
    } catch (err) {
      showError(err.message);
    }
  }

  async function forget(path) {
    try {
      await request(path, "DELETE");
      showError(null);
    } catch (err) {
      showError(err.message);
    }
    confirming.clear();
    confirmingAll = false;
    await refresh();
  }

  function draw() {
    const list = $("memory-list");
    list.replaceChildren(...memories.map(memoryNode));
    $("memories-empty").hidden = memories.length > 0;
    $("more-memories").hidden = !hasMore;
    const all = $("forget-all");
    all.hidden = memories.length === 0;
    all.textContent = confirmingAll ? "Really forget all?" : "Forget all";
  }

  function memoryNode(memory) {
    const li = elt("li", "memory");
    li.dataset.memoryId = memory.id;
    const saved = new Date(memory.created_at * 1000).toLocaleDateString();
    const del = button(confirming.has(memory.id) ? "Really delete?" : "Delete", () => {
      if (confirming.has(memory.id)) return forget(`memories/${encodeURIComponent(memory.id)}`);
      confirming.add(memory.id);
      del.textContent = "Really delete?";
    });
    li.append(elt("div", "memory-text", [memory.text]), elt("div", "memory-meta", [elt("span", null, [`saved ${saved}`]), del]));
    return li;
  }

  function start() {
    $("more-memories").addEventListener("click", more);
    $("forget-all").addEventListener("click", () => {
      if (confirmingAll) return forget("memories");
      confirmingAll = true;
      draw();
    });
    window.addEventListener("agent:run-ended", refresh);
    window.addEventListener("online", refresh);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
    setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
    refresh();
  }

  start();
})();
