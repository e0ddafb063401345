// The official `openai` npm client against the agent server at $AGENT_SERVER_URL:
// a background stream dropped after a few events, resumed with
// `responses.retrieve(id, {stream: true, starting_after})`. Every sequence number must
// arrive exactly once and the streamed text must be the whole answer.
// Prints one JSON line with what it saw; exits non-zero (with the reason) on a failure.
import assert from "node:assert/strict";
import OpenAI from "openai";

const baseURL = process.env.AGENT_SERVER_URL;
const input = process.env.AGENT_INPUT ?? "Research tide pools for 0.2 seconds";
const dropAfter = Number(process.env.DROP_AFTER ?? 5);
assert.ok(baseURL, "AGENT_SERVER_URL is not set");

const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 60_000 });

const seen = [];
const first = await client.responses.create({ model: "agent", input, background: true, stream: true });
for await (const event of first) {
  seen.push(event);
  if (seen.length === dropAfter) break; // leaving the loop aborts the connection
}
assert.equal(seen[0].type, "response.created");
const responseId = seen[0].response.id;
const last = seen.at(-1).sequence_number;

const rest = await client.responses.retrieve(responseId, { stream: true, starting_after: last });
for await (const event of rest) seen.push(event);

const numbers = seen.map((e) => e.sequence_number);
assert.deepEqual(numbers, numbers.map((_, i) => i), `sequence numbers not each exactly once: ${numbers}`);
const terminal = seen.at(-1);
assert.equal(terminal.type, "response.completed", `ends with ${terminal.type}`);

const streamedText = seen.filter((e) => e.type === "response.output_text.delta").map((e) => e.delta).join("");
const message = terminal.response.output.find((item) => item.type === "message");
const finalText = message.content.map((part) => part.text).join("");
assert.equal(streamedText, finalText, "the deltas are not the final message");

const retrieved = await client.responses.retrieve(responseId);
assert.equal(retrieved.status, "completed");
assert.equal(retrieved.output_text, finalText, "retrieve() disagrees with the stream");
const plain = await client.responses.create({ model: "agent", input });
assert.equal(plain.output_text, finalText, "a plain create answers differently");

console.log(JSON.stringify({ responseId, events: seen.length, droppedAfter: last, text: finalText }));
