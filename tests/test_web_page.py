"""The web page at ``/`` in real headless Chromium (Debian's ``chromium``, driven by
Playwright for Python), against a real ``start-server`` process with the offline
model and the session's embedded PostgreSQL.

Locally these tests skip when no browser is installed; under ``CI=true`` a
missing browser fails them. Every case saves a screenshot of its page at the
end, passing or failing, to ``.test-screenshots/<test>.png`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import httpx
import pytest

from harness.scripted_endpoint import ScriptedEndpoint
from tests.support import PROJECT_ROOT, TEAM, ServerProcess, agent_server_process, team_reply

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = PROJECT_ROOT / ".test-screenshots"
WAIT_MS = 60_000  # an upper bound for the slowest step on a loaded 2-core machine, never a speed check

pytestmark = pytest.mark.timeout(240)


def _missing_browser() -> str | None:
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (install Debian's package: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (uv sync installs the dev group)"
    return None


@pytest.fixture(scope="module")
def browser(spawns):
    missing = _missing_browser()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run under CI: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


class PageServer:
    """One ``start-server`` (offline model, unless ``env`` points it elsewhere) that a test may
    restart on the same port."""

    def __init__(self, pg_url: str, log_dir: Path, env: dict[str, str] | None = None):
        env = {
            "DATABASE_URL": pg_url,
            "AGENT_SERVER_DB_SCHEMA": f"web_{uuid.uuid4().hex[:8]}",
            "LLM_ENDPOINT_NAME": "",
            # Slow enough that a reload or a restart lands in the middle of an answer.
            "OFFLINE_MODEL_TOKEN_DELAY_SECONDS": "0.04",
            **(env or {}),
        }
        self.process = agent_server_process("openai", log_dir, env)
        self.process.start(timeout=180)
        self.url = self.process.base_url + "/"

    def start_again(self) -> None:
        """Start the (killed) server anew on the same port; the new one resumes the killed
        one's runs once their heartbeat is stale. (Killed, not SIGTERM: on SIGTERM uvicorn
        would first wait for the page's open stream to end, that is, for the answer to finish.)"""
        old = self.process
        self.process = ServerProcess(old.argv[:-2], env=old.env, port=old.port, log_path=old.log_path)
        self.process.start(timeout=180)

    def get(self, path: str, headers: dict | None = None) -> dict:
        return httpx.get(self.process.base_url + path, headers=headers, timeout=30).json()


@pytest.fixture(scope="module")
def server(browser, pg_url, tmp_path_factory):
    page_server = PageServer(pg_url, tmp_path_factory.mktemp("web"))
    yield page_server
    page_server.process.kill()


@pytest.fixture(scope="module")
def team_server(browser, pg_url, tmp_path_factory):
    """A server whose model (a scripted endpoint on 127.0.0.1) calls ``send_email`` twice in one turn."""
    log_dir = tmp_path_factory.mktemp("web-team")
    with ScriptedEndpoint(team_reply) as endpoint:
        page_server = PageServer(pg_url, log_dir, endpoint.server_env(log_dir))
        yield page_server
        page_server.process.kill()


@pytest.fixture
def new_page(browser, request):
    """Factory: ``new_page(headers=None)`` -> a page in a fresh browser context (own storage)."""
    contexts, pages = [], []

    def make(headers: dict | None = None):
        context = browser.new_context(viewport={"width": 1200, "height": 800}, extra_http_headers=headers or {})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.script_errors = errors
        pages.append(page)
        return page

    yield make
    SCREENSHOTS.mkdir(exist_ok=True)
    for n, page in enumerate(pages):
        path = SCREENSHOTS / f"{request.node.name}{'-' + str(n) if n else ''}.png"
        try:
            page.screenshot(path=str(path))
            print(f"screenshot: {path}")
        except Exception as exc:  # a crashed page: the test's own failure says more
            print(f"no screenshot ({exc})")
    for context in contexts:
        context.close()
    for page in pages:
        assert page.script_errors == [], page.script_errors


def send(page, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def answer_turns(page):
    return page.locator(".turn.assistant")


def wait_finished(page, index: int, status: str = "completed") -> str:
    """Wait until assistant turn ``index`` ends with ``status``; its response id."""
    turn = answer_turns(page).nth(index)
    turn.and_(page.locator(f"[data-status={status}]")).wait_for()
    return turn.get_attribute("data-response-id")


def stored_text(server: PageServer, response_id: str, headers: dict | None = None) -> str:
    """The answer as the server stored it (the last attempt's message items)."""
    response = server.get(f"/responses/{response_id}", headers)
    return "".join(part["text"] for item in response["output"] if item["type"] == "message"
                   for part in item["content"] if part["type"] == "output_text")


def shown_text(page, index: int) -> str:
    """The text of assistant turn ``index``'s answers, in its current attempt."""
    return page.locator(".turn.assistant").nth(index).locator(".attempt:not(.interrupted) .answer").all_inner_texts()


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# ----- the cases ---------------------------------------------------------------------------------

def test_message_streams_in_word_by_word_with_tool_calls_and_multi_turn(server, new_page):
    # start-server says where the page is.
    assert f"Open http://localhost:{server.process.port}/ for the agent's page" in server.process.log_tail(100_000)
    page = new_page()
    posts = []
    page.on("request", lambda r: posts.append(r.post_data_json) if r.method == "POST" else None)
    page.goto(server.url)
    # Record every state the answer passes through, as the browser draws it.
    page.evaluate("""() => {
        window.seen = [];
        new MutationObserver(() => {
            const turns = document.querySelectorAll('.turn.assistant');
            const answer = turns.length && turns[turns.length - 1].querySelector('.answer');
            if (answer) window.seen.push(answer.innerText);
        }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
    }""")

    send(page, "What time is it?")
    first = wait_finished(page, 0)
    tool = answer_turns(page).nth(0).locator(".tool")
    assert tool.count() == 1 and "get_current_time" in tool.inner_text() and "done" in tool.inner_text()
    assert normalise(" ".join(shown_text(page, 0))) == normalise(stored_text(server, first))

    page.evaluate("window.seen = []")
    send(page, "Hello there")
    second = wait_finished(page, 1)
    final = normalise(stored_text(server, second))
    assert normalise(" ".join(shown_text(page, 1))) == final
    partial = [normalise(s) for s in page.evaluate("window.seen")]
    growing = [s for s in dict.fromkeys(partial) if s and s != final]
    # Streamed: many distinct partial answers, each the start of the final one.
    assert len(growing) >= 5, growing
    assert all(final.startswith(s.rstrip("▍")) for s in growing), growing

    # The second message continues from the first completed answer.
    assert posts[0]["background"] is True and posts[0]["stream"] is True
    assert "previous_response_id" not in posts[0]
    assert posts[1]["previous_response_id"] == first
    # The runs panel shows both, newest first.
    page.locator(f".run[data-response-id='{first}'][data-status=completed]").wait_for()
    ids = page.locator(".run").evaluate_all("rows => rows.map(r => r.dataset.responseId)")
    assert ids.index(second) < ids.index(first)


def test_reload_mid_answer_finishes_exactly_once(server, new_page):
    page = new_page()
    page.goto(server.url)
    send(page, "Research tide pools for 3 seconds")
    page.locator(".tool.running").wait_for()
    cursor_before = page.evaluate("JSON.parse(localStorage.getItem('agent-chat-v1')).turns[1].cursor")
    resumed_from = []
    page.on("request", lambda r: resumed_from.append(r.url) if "starting_after=" in r.url else None)
    page.reload()
    # After the reload the answer streams; reload once more in the middle of its text.
    page.locator(".answer.streaming").wait_for()
    page.reload()
    rid = wait_finished(page, 0)

    # The first request after the reload resumed after the last event drawn before it (the tool call).
    assert int(re.search(r"starting_after=(\d+)", resumed_from[0]).group(1)) >= cursor_before >= 1
    turn = answer_turns(page).nth(0)
    assert turn.locator(".tool").count() == 1 and turn.locator(".answer").count() == 1
    assert page.locator(".turn.user").count() == 1
    assert normalise(turn.locator(".answer").inner_text()) == normalise(stored_text(server, rid))
    assert "Research on 'tide pools' finished" in turn.locator(".tool-output").inner_text()


def test_server_restart_mid_answer_resumes_and_finishes(server, new_page):
    page = new_page()
    page.goto(server.url)
    send(page, "Research tide pools for 4 seconds")
    page.locator(".tool.running").wait_for()
    server.process.kill()
    # While the server is down the page says so, and keeps retrying.
    page.locator(".turn.assistant .notice", has_text="Retrying in").wait_for()
    server.start_again()
    rid = wait_finished(page, 0)

    turn = answer_turns(page).nth(0)
    assert "attempt 2" in turn.locator(".resumed").inner_text()
    # The run resumed at its step: attempt 1's call is the call, its output (from attempt 2) shown with it.
    assert turn.locator(".tool").count() == 1 and turn.locator(".attempt.interrupted .tool").count() == 1
    assert turn.locator(".tool .tool-state").inner_text() == "done"
    assert "Research on 'tide pools' finished" in turn.locator(".tool-output").inner_text()
    assert normalise(" ".join(shown_text(page, 0))) == normalise(stored_text(server, rid))
    assert server.get(f"/responses/{rid}")["attempt_number"] == 2


def test_cancel_from_the_runs_panel(server, new_page):
    page = new_page()
    page.goto(server.url)
    send(page, "Research tide pools for 120 seconds")
    page.locator(".tool.running").wait_for()
    rid = answer_turns(page).nth(0).get_attribute("data-response-id")
    row = page.locator(f".run[data-response-id='{rid}']")
    row.and_(page.locator("[data-status=in_progress]")).wait_for()
    row.get_by_role("button", name="Cancel").click()

    page.locator(f".run[data-response-id='{rid}'][data-status=cancelled]").wait_for()
    wait_finished(page, 0, "cancelled")
    assert "Cancelled." in answer_turns(page).nth(0).inner_text()
    assert server.get(f"/responses/{rid}")["status"] == "cancelled"
    assert page.locator("#send").is_enabled()  # the composer is free again


def test_a_second_identity_does_not_see_the_first_ones_runs(server, new_page):
    alice = {"X-Forwarded-Email": "alice@example.com", "X-Forwarded-User": "alice"}
    bob = {"X-Forwarded-Email": "bob@example.com", "X-Forwarded-User": "bob"}
    page_a = new_page(alice)
    page_a.goto(server.url)
    send(page_a, "What time is it?")
    alice_run = wait_finished(page_a, 0)
    page_a.locator(f".run[data-response-id='{alice_run}']").wait_for()

    page_b = new_page(bob)
    page_b.goto(server.url)
    send(page_b, "Hello from Bob")
    bob_run = wait_finished(page_b, 0)
    page_b.locator(f".run[data-response-id='{bob_run}'][data-status=completed]").wait_for()
    assert page_b.locator(".run").evaluate_all("rows => rows.map(r => r.dataset.responseId)") == [bob_run]
    # Bob's browser cannot reach Alice's run either.
    status = page_b.evaluate(f"fetch('responses/{alice_run}').then(r => r.status)")
    assert status == 404
    page_a.reload()
    page_a.locator(f".run[data-response-id='{alice_run}']").wait_for()
    assert page_a.locator(f".run[data-response-id='{bob_run}']").count() == 0


def test_markdown_in_model_output_renders_inert(server, new_page):
    page = new_page()
    page.goto(server.url)
    # The offline model quotes the message back, so this is in the model's output.
    payload = "**bold** <script>window.pwned=1</script><img src=x onerror=window.pwned=2>"
    send(page, payload)
    rid = wait_finished(page, 0)
    assert "<script>window.pwned=1</script>" in stored_text(server, rid)

    answer = answer_turns(page).nth(0).locator(".answer")
    assert answer.locator("strong").inner_text() == "bold"
    assert "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>" in answer.inner_text()
    assert page.locator("#messages script, #messages img, #messages [onerror]").count() == 0
    assert page.evaluate("window.pwned") is None

    # The renderer itself, on hostile input: only its own tags, only safe links.
    hostile = ["<img src=x onerror=alert(1)>", "[x](javascript:alert(1))", "[y](data:text/html,hi)",
               "<a href='javascript:alert(1)'>z</a>", "```\n<script>alert(1)</script>\n```",
               "**<iframe src=//x>**", "`<b>`", "> <style>*{}</style>", "[ok](https://example.com/?a=\"b\")"]
    rendered = page.evaluate("""(inputs) => inputs.map(md => {
        const box = document.createElement('div');
        box.append(window.renderMarkdown(md));
        return {tags: [...box.querySelectorAll('*')].map(e => e.tagName.toLowerCase()),
                hrefs: [...box.querySelectorAll('a')].map(a => a.getAttribute('href')),
                attrs: [...box.querySelectorAll('*')].flatMap(e => e.getAttributeNames()),
                text: box.textContent};
    })""", hostile)
    allowed = {"p", "br", "strong", "em", "del", "code", "pre", "a", "ul", "ol", "li", "blockquote", "hr",
               "h3", "h4", "h5", "h6"}
    for source, result in zip(hostile, rendered):
        assert set(result["tags"]) <= allowed, (source, result)
        assert set(result["attrs"]) <= {"href", "rel", "target", "data-lang", "start"}, (source, result)
        assert all(re.match(r"^(https?://|mailto:)", h) for h in result["hrefs"]), (source, result)
    assert rendered[0]["text"] == hostile[0] and rendered[4]["text"] == "<script>alert(1)</script>"
    assert rendered[8]["hrefs"] == ['https://example.com/?a="b"']
    print(json.dumps(rendered[:2]))


def test_the_memories_panel_shows_and_forgets_what_the_agent_remembers(server, new_page):
    carol = {"X-Forwarded-Email": "carol@example.com"}
    dave = {"X-Forwarded-Email": "dave@example.com"}
    page = new_page(carol)
    page.goto(server.url)
    page.locator("#memories-empty").wait_for()  # nothing remembered yet
    send(page, "Remember that my favourite colour is teal")
    wait_finished(page, 0)
    teal = page.locator(".memory", has_text="my favourite colour is teal")
    teal.wait_for()  # the panel refreshed when the run ended
    teal_id = teal.get_attribute("data-memory-id")

    # A new chat (no previous response): the agent still knows.
    page.click("#new-chat")
    send(page, "What is my favourite colour?")
    wait_finished(page, 0)
    assert "teal" in " ".join(shown_text(page, 0))

    # A memory's text is shown as text, never as markup.
    hostile = "<img src=x onerror=window.pwned=1> **not bold**"
    added = httpx.post(server.process.base_url + "/memories", json={"text": hostile}, headers=carol, timeout=30)
    assert added.status_code == 200
    page.reload()
    page.locator(".memory", has_text="onerror").wait_for()
    assert page.locator(".memory-text").all_inner_texts() == [hostile, "my favourite colour is teal"]
    assert page.locator(".memories img, .memories strong").count() == 0 and page.evaluate("window.pwned") is None
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "memories-panel.png"))

    # Someone else sees none of it, and cannot reach it.
    other = new_page(dave)
    other.goto(server.url)
    other.locator("#memories-empty").wait_for()
    assert other.locator(".memory").count() == 0
    assert other.evaluate(f"fetch('memories/{teal_id}', {{method: 'DELETE'}}).then(r => r.status)") == 404

    # Delete asks once more, then forgets that one memory only.
    teal.get_by_role("button", name="Delete").click()
    teal.get_by_role("button", name="Really delete?").click()
    page.locator(f".memory[data-memory-id='{teal_id}']").wait_for(state="detached")
    assert [m["text"] for m in server.get("/memories", carol)["data"]] == [hostile]

    # Forget all: Dave's two memories go, Carol's stays.
    for text in ("I like tea", "I live in Lisbon"):
        httpx.post(server.process.base_url + "/memories", json={"text": text}, headers=dave, timeout=30)
    other.reload()
    other.locator(".memory", has_text="Lisbon").wait_for()
    other.click("#forget-all")
    other.get_by_role("button", name="Really forget all?").click()
    other.locator("#memories-empty").wait_for()
    assert server.get("/memories", dave)["data"] == [] and len(server.get("/memories", carol)["data"]) == 1


# ----- approvals -----------------------------------------------------------------------------------

def test_an_approval_request_survives_reload_and_restart_and_is_rejected_with_a_reason(server, new_page):
    page = new_page()
    page.goto(server.url)
    send(page, "Email ada@example.com about the launch")
    rid = wait_finished(page, 0)
    card = page.locator(".approval")
    assert "send_email" in card.locator(".tool-name").inner_text()
    assert "to: ada@example.com" in card.locator(".approval-args").inner_text()
    assert card.locator(".approval-state").inner_text() == "waits for your approval"
    assert answer_turns(page).nth(0).locator(".tool .tool-state").inner_text() == "waits for approval"
    page.locator(f".run[data-response-id='{rid}'] .badge.waiting").wait_for()  # the runs panel marks it

    server.process.kill()
    server.start_again()
    page.reload()
    card = page.locator(".approval")
    card.get_by_role("button", name="Approve").wait_for()  # still waiting, after a reload and a restart
    card.locator(".approval-reason").fill("not before Friday")
    card.get_by_role("button", name="Reject").click()
    wait_finished(page, 1)
    assert normalise(" ".join(shown_text(page, 1))) == ("I did not send the email. This call was not made: the user "
                                                      "rejected it (not before Friday).")
    card.locator(".approval-state", has_text="rejected").wait_for()
    assert card.get_by_role("button", name="Approve").count() == 0
    page.reload()
    page.locator(".approval .approval-state", has_text="rejected").wait_for()
    assert server.get(f"/responses/{rid}")["approval_requests"][0]["status"] == "rejected"
    page.locator(f".run[data-response-id='{rid}']").wait_for()
    assert page.locator(f".run[data-response-id='{rid}'] .badge.waiting").count() == 0


def test_an_approved_call_runs_and_shows_its_output_with_the_call(server, new_page):
    page = new_page()
    page.goto(server.url)
    send(page, "Email grace@example.com about the review")
    wait_finished(page, 0)
    page.locator(".approval").get_by_role("button", name="Approve").click()
    wait_finished(page, 1)
    assert normalise(" ".join(shown_text(page, 1))).startswith("Done: Email to grace@example.com sent")
    paused = answer_turns(page).nth(0)
    assert paused.locator(".tool .tool-state").inner_text() == "done"  # its output came with the answer
    assert "Email to grace@example.com sent" in paused.locator(".tool-output").inner_text()
    paused.locator(".approval-state", has_text="approved").wait_for()


def test_two_requests_of_one_turn_are_decided_one_by_one_and_answered_together(team_server, new_page):
    page = new_page()
    page.goto(team_server.url)
    send(page, "Email the team about the launch")
    rid = wait_finished(page, 0)
    cards = page.locator(".approval")
    assert cards.count() == 2
    assert [cards.nth(i).locator(".approval-args").inner_text().split(",")[0] for i in range(2)] == [
        f"to: {to}" for to in TEAM]
    # The first decision waits for the second: nothing is sent, the server still waits for both.
    cards.nth(0).get_by_role("button", name="Approve").click()
    cards.nth(0).locator(".approval-state", has_text="you chose approve").wait_for()
    assert answer_turns(page).count() == 1
    assert [r["status"] for r in team_server.get(f"/responses/{rid}")["approval_requests"]] == ["pending"] * 2
    # Changed and decided again, then the second: both go in one answer.
    cards.nth(0).get_by_role("button", name="Change").click()
    cards.nth(0).get_by_role("button", name="Approve").click()
    cards.nth(1).locator(".approval-reason").fill("not Bob")
    cards.nth(1).get_by_role("button", name="Reject").click()
    wait_finished(page, 1)
    assert normalise(" ".join(shown_text(page, 1))) == (
        "Summary: Email to ada@example.com sent, subject 'the launch'. | "
        "This call was not made: the user rejected it (not Bob).")
    cards.nth(0).locator(".approval-state", has_text="approved").wait_for()
    cards.nth(1).locator(".approval-state", has_text="rejected").wait_for()
    assert {r["status"] for r in team_server.get(f"/responses/{rid}")["approval_requests"]} == {"approved", "rejected"}
    assert page.locator(".turn.user").nth(1).inner_text().strip() == "Approved send_email; Rejected send_email: not Bob"
    page.locator(".run", has_text="Answered 2 tool calls").wait_for()  # the runs panel names the answer
