// Fills the conntrack table of the namespace it runs in: from each of
// `sockets` UDP sockets, one datagram to each of `count` stale addresses
// (baseMapping's), so sockets x count distinct tracked flows, none of them
// translated. Prints "done <n>" when every datagram has been handed to the
// kernel.
//   node flows.mjs <count> <sockets> <port>
import dgram from 'node:dgram';
import { baseMapping } from './lib.mjs';

const [count, sockets, port] = process.argv.slice(2).map(Number);
const socks = await Promise.all(
  Array.from(
    { length: sockets },
    () =>
      new Promise((resolve) => {
        const s = dgram.createSocket('udp6');
        s.bind(0, () => resolve(s));
      }),
  ),
);
let sent = 0;
const payload = Buffer.from('x');
for (let i = 0; i < count; i++) {
  const dst = baseMapping(i)[0];
  await Promise.all(socks.map((s) => new Promise((resolve) => s.send(payload, port, dst, () => resolve(sent++)))));
}
for (const s of socks) s.close();
process.stdout.write(`done ${sent}\n`);
