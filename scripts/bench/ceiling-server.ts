/** The ceiling for bench-validate: a bare Bun.serve answering a constant body. Prints its port. */
const body = '{"signature":null,"infos":{"info":[]},"items":{"item":[]},"id":null,"ttl":"2026-01-01T00:00:00.000Z"}';
const server = Bun.serve({
  port: 0,
  hostname: '127.0.0.1',
  fetch: () => new Response(body, { headers: { 'content-type': 'application/json;charset=UTF-8' } }),
});
console.log(`PORT ${server.port}`);
