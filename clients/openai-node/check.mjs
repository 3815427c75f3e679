// Drives a kvserve server with the official openai client: logprobs,
// a json_schema answer, a tool call under tool_choice "required" with its
// result sent back, each whole and streamed. KVSERVE_URL is the server's
// base URL (…/v1). Exits non-zero, saying what failed, on any mismatch.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.KVSERVE_URL ?? "http://127.0.0.1:8000/v1", apiKey: "none", maxRetries: 0 });
const model = (await client.models.list()).data[0].id;

function check(ok, what) {
  if (!ok) {
    console.error("FAIL: " + what);
    process.exit(1);
  }
}

// validate checks value against the JSON Schema subset used here.
function validate(schema, value, path = "$") {
  if (schema.enum) check(schema.enum.includes(value), `${path}: ${JSON.stringify(value)} not in ${JSON.stringify(schema.enum)}`);
  const types = [].concat(schema.type ?? []);
  const typeOf = (v) => (v === null ? "null" : Array.isArray(v) ? "array" : Number.isInteger(v) ? "integer" : typeof v);
  if (types.length) {
    const t = typeOf(value);
    check(types.includes(t) || (t === "integer" && types.includes("number")), `${path}: ${JSON.stringify(value)} is not ${types}`);
  }
  if (typeOf(value) === "object") {
    for (const r of schema.required ?? []) check(r in value, `${path}: missing ${r}`);
    for (const [k, v] of Object.entries(value)) {
      const ps = schema.properties?.[k];
      check(ps || schema.additionalProperties !== false, `${path}: unexpected property ${k}`);
      if (ps) validate(ps, v, `${path}.${k}`);
    }
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined) check(value.length >= schema.minItems, `${path}: too few items`);
    if (schema.maxItems !== undefined) check(value.length <= schema.maxItems, `${path}: too many items`);
    value.forEach((v, i) => schema.items && validate(schema.items, v, `${path}[${i}]`));
  }
  if (typeof value === "string" && schema.maxLength !== undefined) check([...value].length <= schema.maxLength, `${path}: too long`);
}

function checkLogprobs(lp, n) {
  check(Array.isArray(lp?.content) && lp.content.length > 0, "logprobs.content is a non-empty list");
  for (const t of lp.content) {
    check(typeof t.token === "string" && t.logprob <= 0 && Array.isArray(t.bytes), `token entry ${JSON.stringify(t)}`);
    check(t.top_logprobs.length === n, `top_logprobs has ${t.top_logprobs.length} entries, want ${n}`);
    check(t.top_logprobs[0].logprob >= t.logprob - 1e-4, "the best alternative is at least as likely as the token");
  }
}

const question = [{ role: "user", content: "What is the weather in Paris?" }];

// 1. Logprobs, whole and streamed.
{
  const r = await client.chat.completions.create({ model, messages: question, max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 3 });
  checkLogprobs(r.choices[0].logprobs, 3);
  const text = r.choices[0].logprobs.content.map((t) => Buffer.from(t.bytes)).reduce((a, b) => Buffer.concat([a, b]), Buffer.alloc(0)).toString();
  check(text === r.choices[0].message.content, "the tokens' bytes spell the message");
  const stream = await client.chat.completions.create({ model, messages: question, max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 3, stream: true });
  let content = "";
  const tokens = [];
  for await (const c of stream) {
    content += c.choices[0]?.delta?.content ?? "";
    tokens.push(...(c.choices[0]?.logprobs?.content ?? []));
  }
  checkLogprobs({ content: tokens }, 3);
  check(content === r.choices[0].message.content, `streamed ${JSON.stringify(content)} equals whole ${JSON.stringify(r.choices[0].message.content)}`);
  check(tokens.length === r.choices[0].logprobs.content.length, "streamed as many token logprobs as whole");
  console.log("ok: logprobs and top_logprobs, whole and streamed");
}

// 2. A json_schema answer that parses and validates, whole and streamed.
const person = {
  type: "object",
  properties: {
    name: { type: "string", maxLength: 20 },
    age: { type: "integer" },
    languages: { type: "array", items: { type: "string", enum: ["go", "js", "c"] }, maxItems: 3 },
    employed: { type: "boolean" },
  },
  required: ["name", "age", "languages", "employed"],
  additionalProperties: false,
};
{
  const response_format = { type: "json_schema", json_schema: { name: "person", strict: true, schema: person } };
  const r = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Describe a programmer as JSON." }], max_tokens: 200, temperature: 0, response_format });
  const v = JSON.parse(r.choices[0].message.content);
  validate(person, v);
  const stream = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Describe a programmer as JSON." }], max_tokens: 200, temperature: 0.7, seed: 3, response_format, stream: true });
  let content = "";
  for await (const c of stream) content += c.choices[0]?.delta?.content ?? "";
  validate(person, JSON.parse(content));
  console.log("ok: json_schema answers parse and validate, whole and streamed:", JSON.stringify(v));
}

// 3. A tool call under tool_choice "required", its result sent back, whole and streamed.
const weather = {
  type: "object",
  properties: { city: { type: "string", maxLength: 24 }, unit: { type: "string", enum: ["celsius", "fahrenheit"] } },
  required: ["city", "unit"],
  additionalProperties: false,
};
const tools = [{ type: "function", function: { name: "get_weather", description: "The weather in a city", parameters: weather } }];
{
  const r = await client.chat.completions.create({ model, messages: question, tools, tool_choice: "required", parallel_tool_calls: false, max_tokens: 200, temperature: 0 });
  const msg = r.choices[0].message;
  check(r.choices[0].finish_reason === "tool_calls" && msg.tool_calls?.length === 1, `one tool call, got ${JSON.stringify(r.choices[0])}`);
  const call = msg.tool_calls[0];
  check(call.type === "function" && call.function.name === "get_weather" && call.id, "the call names get_weather");
  validate(weather, JSON.parse(call.function.arguments));
  const back = [...question, msg, { role: "tool", tool_call_id: call.id, content: JSON.stringify({ temperature: 21, unit: "celsius" }) }];
  const r2 = await client.chat.completions.create({ model, messages: back, tools, max_tokens: 24, temperature: 0 });
  check(r2.choices[0].message.role === "assistant", "an answer after the tool result");
  console.log("ok: tool call with tool_choice required:", call.function.arguments, "- result sent back");

  const stream = await client.chat.completions.create({ model, messages: question, tools, tool_choice: "required", parallel_tool_calls: false, max_tokens: 200, temperature: 0, stream: true });
  const calls = [];
  let finish = null;
  for await (const c of stream) {
    const ch = c.choices[0];
    if (!ch) continue;
    for (const d of ch.delta?.tool_calls ?? []) {
      if (!calls[d.index]) calls[d.index] = { id: d.id, type: d.type, function: { name: d.function?.name ?? "", arguments: "" } };
      calls[d.index].function.arguments += d.function?.arguments ?? "";
    }
    finish = ch.finish_reason ?? finish;
  }
  check(finish === "tool_calls" && calls.length === 1 && calls[0].id && calls[0].function.name === "get_weather", `streamed call ${JSON.stringify(calls)} (${finish})`);
  validate(weather, JSON.parse(calls[0].function.arguments));
  check(calls[0].function.arguments === call.function.arguments, "streamed arguments equal the whole ones");
  const back2 = [...question, { role: "assistant", content: null, tool_calls: calls }, { role: "tool", tool_call_id: calls[0].id, content: "21 degrees" }];
  const s2 = await client.chat.completions.create({ model, messages: back2, tools, max_tokens: 24, temperature: 0, stream: true });
  let n = 0;
  for await (const c of s2) n += c.choices.length;
  check(n > 0, "a streamed answer after the tool result");
  console.log("ok: streamed tool call:", calls[0].function.arguments, "- result sent back, streamed");
}
console.log("all ok");
