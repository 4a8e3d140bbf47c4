// Drive the official TypeScript/JavaScript SDK from the Python tests:
//   node run.mjs BASE_URL API_KEY stream|create 'JSON BODY'
// Prints one JSON line: {"ok": true, "message": ...} or {"ok": false, "error": ..., "status": ...}.
import Anthropic from "@anthropic-ai/sdk";

const [baseURL, apiKey, mode, body] = process.argv.slice(2);
const client = new Anthropic({ baseURL, apiKey, maxRetries: 0, timeout: 20000 });
const params = JSON.parse(body);
try {
  let message;
  if (mode === "stream") {
    const stream = client.messages.stream(params);
    let deltas = 0;
    stream.on("streamEvent", (event) => { if (event.type === "content_block_delta") deltas += 1; });
    message = await stream.finalMessage();
    console.log(JSON.stringify({ ok: true, message, deltas }));
  } else {
    message = await client.messages.create(params);
    console.log(JSON.stringify({ ok: true, message }));
  }
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: err.constructor.name, status: err.status ?? null, message: String(err.message) }));
}
