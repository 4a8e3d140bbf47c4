// The official TypeScript SDK against the gateway: every operation of the
// route table, through the SDK's own calls (run by tests/gateway/test_node_clients.py).
// Prints one JSON line of what it saw; any failure throws (exit code 1).
import Anthropic, { toFile } from '@anthropic-ai/sdk';

const client = new Anthropic({
  apiKey: process.env.GATEWAY_KEY,
  baseURL: process.env.GATEWAY_URL,
  maxRetries: 0,
});
const model = 'claude-sonnet-4-6';
const seen = {};

const msg = await client.messages.create({
  model, max_tokens: 20, messages: [{ role: 'user', content: 'reply with 3 words' }],
});
seen.text = msg.content[0].text;

const stream = client.messages.stream({
  model, max_tokens: 50, messages: [{ role: 'user', content: 'reply with 5 words' }],
});
const pieces = [];
stream.on('text', (t) => pieces.push(t));
const final = await stream.finalMessage();
seen.stream_pieces = pieces.length;
seen.stream_output_tokens = final.usage.output_tokens;

const betaMsg = await client.beta.messages.create({
  model, max_tokens: 5, messages: [{ role: 'user', content: 'hi' }], betas: ['context-1m-2025-08-07'],
});
seen.beta_text = betaMsg.content[0].text;

seen.count = (await client.messages.countTokens({ model, messages: [{ role: 'user', content: 'count me' }] })).input_tokens;
seen.beta_count = (await client.beta.messages.countTokens({ model, messages: [{ role: 'user', content: 'x' }] })).input_tokens;

const models = [];
for await (const m of client.models.list({ limit: 3 })) models.push(m.id);
seen.models = models;
seen.model = (await client.models.retrieve(model)).id;
seen.beta_models = (await client.beta.models.list()).data.length;

const file = await client.beta.files.upload({ file: await toFile(Buffer.from('ts notes'), 'ts.txt', { type: 'text/plain' }) });
seen.file_listed = (await client.beta.files.list()).data.some((f) => f.id === file.id);
seen.file_name = (await client.beta.files.retrieveMetadata(file.id)).filename;
seen.file_content = await (await client.beta.files.download(file.id)).text();
await client.beta.files.delete(file.id);
seen.file_deleted = true;

const requests = [0, 1].map((i) => ({
  custom_id: `t${i}`, params: { model, max_tokens: 5, messages: [{ role: 'user', content: `hi ${i}` }] },
}));
const batch = await client.messages.batches.create({ requests });
seen.batch_get = (await client.messages.batches.retrieve(batch.id)).id === batch.id;
seen.batch_listed = (await client.messages.batches.list({ limit: 20 })).data.some((b) => b.id === batch.id);
const results = [];
for await (const r of await client.messages.batches.results(batch.id)) results.push(r.custom_id);
seen.batch_results = results.sort();
const beta_results = [];
for await (const r of await client.beta.messages.batches.results(batch.id)) beta_results.push(r.custom_id);
seen.beta_batch_results = beta_results.sort();
await client.messages.batches.delete(batch.id);
seen.batch_deleted = true;

try {
  await client.messages.create({ model: 'claude-opus-4-1', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] });
  seen.refused = null;
} catch (err) {
  seen.refused = { status: err.status, type: err.error?.error?.type };
}
console.log(JSON.stringify(seen));
