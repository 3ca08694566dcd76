// Drives a running `airlock serve` with the official `openai` npm client (run by
// gateway_test.cc's OfficialOpenAiNodeClient* tests): models (list and retrieve), chat,
// streaming (the usage chunk only with stream_options.include_usage), errors.
// Usage: NODE_PATH=<dir with node_modules/openai> node openai_client.cjs BASE_URL API_KEY [MODE]
// MODE full (default): everything, including that a wrong key is refused (BASE_URL may be https,
// with NODE_EXTRA_CA_CERTS naming the server's certificate). MODE keyless: a serve without API
// keys on loopback; API_KEY is a placeholder and models, chat and streaming must answer.
const mod = require('openai');
const OpenAI = mod.OpenAI || mod.default || mod;

function check(cond, what) {
  if (!cond) {
    console.error('FAIL: ' + what);
    process.exit(1);
  }
}

async function main() {
  const [baseURL, apiKey, mode = 'full'] = process.argv.slice(2);
  check(mode === 'full' || mode === 'keyless', 'unknown mode ' + mode);
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20000 });
  const models = await client.models.list();
  const ids = [];
  for await (const m of models) ids.push(m.id);
  check(ids.includes('echo'), 'models.list lists echo: ' + JSON.stringify(ids));

  const chat = await client.chat.completions.create({
    model: 'echo',
    messages: [{ role: 'user', content: 'hello frank@example.com' }],
  });
  check(chat.choices[0].message.content === 'echo: hello frank@example.com',
        'chat content restored: ' + chat.choices[0].message.content);
  check(chat.usage && chat.usage.total_tokens > 0, 'chat usage present');

  const stream = await client.chat.completions.create({
    model: 'echo',
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'stream to grace@example.org' }],
  });
  let text = '';
  let usage = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) text += (c.delta && c.delta.content) || '';
    if (chunk.usage) usage = chunk.usage;
  }
  check(text === 'echo: stream to grace@example.org', 'streamed content restored: ' + text);
  check(usage && usage.completion_tokens > 0, 'stream usage present');
  // Without stream_options.include_usage there is no usage chunk (as with OpenAI).
  const plain = await client.chat.completions.create({
    model: 'echo',
    stream: true,
    messages: [{ role: 'user', content: 'no usage' }],
  });
  let plainUsage = null;
  for await (const chunk of plain) if (chunk.usage) plainUsage = chunk.usage;
  check(plainUsage === null, 'no usage chunk unless asked: ' + JSON.stringify(plainUsage));
  // One model by id.
  const echo = await client.models.retrieve('echo');
  check(echo.id === 'echo' && echo.created > 0, 'models.retrieve: ' + JSON.stringify(echo));

  try {
    await client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] });
    check(false, 'unknown model must throw');
  } catch (e) {
    check(e instanceof OpenAI.APIError, 'APIError for unknown model: ' + e);
    check(e.status === 404 && e.code === 'model_not_found', 'status 404 / model_not_found: ' + e.status + ' ' + e.code);
  }
  try {
    await client.chat.completions.create({
      model: 'echo', messages: [{ role: 'user', content: 'id 11010519491231002X' }] });
    check(false, 'blocked request must throw');
  } catch (e) {
    check(e.status === 403 && e.code === 'policy_violation', 'status 403 / policy_violation: ' + e.status);
  }
  if (mode === 'keyless') {
    console.log('OK');
    return;
  }
  const bad = new OpenAI({ baseURL, apiKey: 'wrong', maxRetries: 0 });
  try {
    await bad.models.list();
    check(false, 'bad key must throw');
  } catch (e) {
    check(e instanceof OpenAI.AuthenticationError, 'AuthenticationError for a bad key: ' + e);
  }
  console.log('OK');
}

main().catch((e) => {
  console.error('FAIL: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
