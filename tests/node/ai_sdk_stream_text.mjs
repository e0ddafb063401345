// The Vercel AI SDK's OpenAI Responses provider against the agent server at
// $AGENT_SERVER_URL: `streamText` with `openai.responses("agent")` must stream the
// whole answer, and it must be what a plain (non-stream) request answers.
// Prints one JSON line; exits non-zero (with the reason) on a failure.
import assert from "node:assert/strict";
import { createOpenAI } from "@ai-sdk/openai";
import { streamText } from "ai";
import OpenAI from "openai";

const baseURL = process.env.AGENT_SERVER_URL;
const input = process.env.AGENT_INPUT ?? "hello there";
assert.ok(baseURL, "AGENT_SERVER_URL is not set");

const provider = createOpenAI({ baseURL, apiKey: "unused" });
const errors = [];
const result = streamText({
  model: provider.responses("agent"),
  prompt: input,
  maxRetries: 0,
  onError: ({ error }) => errors.push(String(error?.stack ?? error)),
});
const chunks = [];
for await (const chunk of result.textStream) chunks.push(chunk);
const text = await result.text;
const finishReason = await result.finishReason;
assert.deepEqual(errors, [], "streamText reported errors");
assert.equal(chunks.join(""), text);
assert.ok(chunks.length > 1, "the text arrived in one piece, not streamed");

const plain = await new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 }).responses.create({ model: "agent", input });
assert.equal(text, plain.output_text, "streamText's text is not the answer");

console.log(JSON.stringify({ chunks: chunks.length, finishReason, text }));
