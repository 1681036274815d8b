/**
 * The demo's client side (scripts/demo.sh): waits for the agent, then makes the
 * validate calls a licensed program would make and prints one line per product
 * module. Uses fetch only, so the demo needs no curl.
 * Usage: bun scripts/demo-client.ts <port>
 */
export {};

const port = Number(process.argv[2] ?? "8080");
const base = `http://127.0.0.1:${port}/rest`;
const apiKey = '0b9d2e7f-3a41-4c6b-8e5d-9f2a1c7b4e10'; // vendor-wide demo API key (validate only)
const authorization = `Basic ${Buffer.from(`apiKey:${apiKey}`).toString('base64')}`;

for (let i = 0; ; i++) {
  const up = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false);
  if (up) break;
  if (i === 100) throw new Error(`the agent did not answer on port ${port}`);
  await Bun.sleep(100);
}

interface Envelope {
  infos: { info: { id: string; type: string; value: string }[] };
  items: { item: { property: { name: string; value: string }[] }[] };
}

async function call(licensee: string, body: string): Promise<void> {
  console.log(`\n$ curl -u apiKey:${apiKey} -H 'Accept: application/json' -d '${body}' ${base}/licensee/${licensee}/validate`);
  const res = await fetch(`${base}/licensee/${licensee}/validate`, {
    method: 'POST',
    headers: { authorization, accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded' },
    body,
  });
  const envelope = (await res.json()) as Envelope;
  for (const item of envelope.items?.item ?? []) {
    const p = Object.fromEntries(item.property.map((x) => [x.name, x.value]));
    const extra = ['expires', 'evaluationExpires', 'expirationTimestamp', 'remainingQuantity', 'quota']
      .filter((k) => p[k] !== undefined)
      .map((k) => `${k}=${p[k]}`)
      .join(' ');
    console.log(`  ${p['productModuleNumber']!.padEnd(22)} ${p['licensingModel']!.padEnd(13)} valid=${p['valid'] ?? '-'} ${p['warningLevel']} ${extra}`);
  }
  for (const info of envelope.infos?.info ?? []) console.log(`  info ${info.type} ${info.id}: ${info.value}`);
}

await call('DEMO-SUBSCRIPTION', '');
await call('DEMO-TRYANDBUY', '');
await call('DEMO-FLOATING', 'productModuleNumber0=DEMO-M-FLOATING&sessionId0=workstation-1&action0=checkOut');
await call('DEMO-PAYPERUSE', 'productModuleNumber0=DEMO-M-PAYPERUSE&usedQuantity0=5');

console.log('\n== XML (what Java and C# clients get when they send no Accept header):');
const xml = await fetch(`${base}/licensee/DEMO-QUOTA/validate`, {
  method: 'POST',
  headers: { authorization, 'content-type': 'application/x-www-form-urlencoded' },
  body: 'productModuleNumber0=DEMO-M-QUOTA',
}).then((r) => r.text());
console.log(`${xml.slice(0, 600)} …`);
