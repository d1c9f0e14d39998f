// A peer service for kernel tests: answers every TCP connection and every UDP
// datagram with "<name> <local address>", so a test can tell which host and
// which of its addresses it reached. TCP on PORT closes at once (and swallows
// whatever the client sends); TCP on PORT+1 stays open until the client
// closes, for tests that need a long-lived flow; TCP on PORT+2 echoes what it
// receives, for an application that talks all the time.
// Usage: node echo-server.mjs NAME PORT
import net from 'node:net';
import dgram from 'node:dgram';

const [name, portText] = process.argv.slice(2);
const port = Number(portText);
const local = (a) => a.replace(/^::ffff:/, '');

net
  .createServer((s) => {
    s.on('error', () => {});
    s.resume();
    s.end(`${name} ${local(s.localAddress)}\n`);
  })
  .listen({ port, host: '::', ipv6Only: false }, () => console.log('tcp ready'));

net
  .createServer((s) => {
    s.on('error', () => {});
    s.resume();
    s.write(`${name} ${local(s.localAddress)}\n`);
    s.on('end', () => s.end());
  })
  .listen({ port: port + 1, host: '::', ipv6Only: false });

net
  .createServer((s) => {
    s.on('error', () => {});
    s.pipe(s);
  })
  .listen({ port: port + 2, host: '::', ipv6Only: false });

// One socket per family bound to the wildcard would not tell the local
// address; IPV6_PKTINFO is not exposed in Node, so bind dual-stack and answer
// with the name only for UDP.
const udp = dgram.createSocket({ type: 'udp6', ipv6Only: false });
udp.on('message', (msg, rinfo) => udp.send(`${name} ${msg.toString().trim()}`, rinfo.port, rinfo.address));
udp.bind(port, '::', () => console.log('udp ready'));
