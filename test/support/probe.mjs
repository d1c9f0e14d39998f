// A client for kernel tests, run inside a namespace. Prints one JSON line.
//   probe.mjs tcp ADDR PORT TIMEOUT_MS      -> {"ok":true,"reply":"..."} or {"ok":false,"error":"ECONNREFUSED"}
//   probe.mjs udp ADDR PORT TIMEOUT_MS      -> same, one datagram and its answer
//   probe.mjs tcp-send ADDR PORT BYTES      -> connects, sends BYTES bytes, prints the answer
//   probe.mjs tcp-hold ADDR PORT MS         -> connects (to the peer's holding port), prints
//       {"ok":true,...} once connected, keeps the connection open for MS ms
//   probe.mjs tcp-chat ADDR PORT INTERVAL_MS -> one connection (to the peer's echo port)
//       sending a line every INTERVAL_MS until SIGTERM, then prints
//       {"ok":bool,"sent":n,"echoed":n,"maxGapMs":n,"error":...}: an application
//       that must stay connected
//   probe.mjs udp-stream ADDR PORT SRCPORT DURATION_MS INTERVAL_MS
//       -> {"sent":n,"replies":[{"t":ms since start,"reply":"..."}],"errors":[...]}
//       one socket, one source port for the whole run, like a long-lived UDP flow
import net from 'node:net';
import dgram from 'node:dgram';

const [mode, addr, portText, ...rest] = process.argv.slice(2);
const port = Number(portText);
const family = addr.includes(':') ? 'udp6' : 'udp4';
const print = (o) => process.stdout.write(JSON.stringify(o) + '\n');

if (mode === 'tcp') {
  const timeout = Number(rest[0]);
  const s = net.connect({ host: addr, port });
  let data = '';
  const timer = setTimeout(() => {
    print({ ok: false, error: 'ETIMEDOUT' });
    process.exit(0);
  }, timeout);
  s.on('data', (d) => (data += d));
  s.on('end', () => {
    clearTimeout(timer);
    print({ ok: true, reply: data.trim() });
    process.exit(0);
  });
  s.on('error', (e) => {
    clearTimeout(timer);
    print({ ok: false, error: e.code ?? e.message });
    process.exit(0);
  });
} else if (mode === 'tcp-send') {
  const s = net.connect({ host: addr, port });
  let data = '';
  s.on('connect', () => s.end(Buffer.alloc(Number(rest[0]), 'x')));
  s.on('data', (d) => (data += d));
  s.on('close', () => {
    print({ ok: data.length > 0, reply: data.trim() });
    process.exit(0);
  });
  s.on('error', (e) => {
    print({ ok: false, error: e.code ?? e.message });
    process.exit(0);
  });
} else if (mode === 'tcp-hold') {
  const s = net.connect({ host: addr, port });
  s.once('data', (d) => {
    print({ ok: true, reply: d.toString().trim(), localPort: s.localPort });
    setTimeout(() => {
      s.end();
      process.exit(0);
    }, Number(rest[0]));
  });
  s.on('error', (e) => {
    print({ ok: false, error: e.code ?? e.message });
    process.exit(0);
  });
} else if (mode === 'udp') {
  const timeout = Number(rest[0]);
  const s = dgram.createSocket(family);
  const timer = setTimeout(() => {
    print({ ok: false, error: 'ETIMEDOUT' });
    process.exit(0);
  }, timeout);
  s.on('message', (m) => {
    clearTimeout(timer);
    print({ ok: true, reply: m.toString() });
    process.exit(0);
  });
  s.on('error', (e) => {
    clearTimeout(timer);
    print({ ok: false, error: e.code ?? e.message });
    process.exit(0);
  });
  s.send('ping', port, addr);
} else if (mode === 'udp-stream') {
  const [srcPort, duration, interval] = rest.map(Number);
  const s = dgram.createSocket(family);
  const start = Date.now();
  const out = { sent: 0, replies: [], errors: [] };
  s.on('message', (m) => out.replies.push({ t: Date.now() - start, reply: m.toString() }));
  s.on('error', (e) => out.errors.push({ t: Date.now() - start, error: e.code ?? e.message }));
  s.bind(srcPort, () => {
    console.error('stream started');
    const tick = setInterval(() => {
      out.sent++;
      s.send(`seq${out.sent}`, port, addr, (e) => e && out.errors.push({ t: Date.now() - start, error: e.code ?? e.message }));
    }, interval);
    setTimeout(() => {
      clearInterval(tick);
      setTimeout(() => {
        print(out);
        process.exit(0);
      }, 200);
    }, duration);
  });
} else if (mode === 'tcp-chat') {
  const interval = Number(rest[0]);
  const out = { ok: false, sent: 0, echoed: 0, maxGapMs: 0 };
  let last = Date.now();
  let buffered = '';
  const s = net.connect({ host: addr, port });
  const finish = () => {
    out.maxGapMs = Math.max(out.maxGapMs, Date.now() - last);
    print(out);
    process.exit(0);
  };
  s.on('connect', () => {
    out.ok = true;
    last = Date.now();
    console.error('chat connected');
    setInterval(() => {
      out.sent++;
      s.write(`seq${out.sent}\n`);
    }, interval);
  });
  s.on('data', (d) => {
    buffered += d;
    const lines = buffered.split('\n');
    buffered = lines.pop();
    for (let i = 0; i < lines.length; i++) {
      const now = Date.now();
      out.maxGapMs = Math.max(out.maxGapMs, now - last);
      last = now;
      out.echoed++;
    }
  });
  s.on('error', (e) => {
    out.ok = false;
    out.error = e.code ?? e.message;
    finish();
  });
  s.on('close', () => {
    if (out.ok) {
      out.ok = false;
      out.error = 'closed by the peer';
    }
    finish();
  });
  process.on('SIGTERM', finish);
} else {
  console.error('usage: probe.mjs tcp|udp|udp-stream|tcp-chat ...');
  process.exit(2);
}
