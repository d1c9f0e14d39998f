import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { parsePasswd, parseProcNet, socketOwners } from '../../../src/support/socket-owners.js';

describe('parseProcNet', () => {
  test('IPv4 and IPv6 endpoints in host byte order; IPv4-mapped IPv6 read as IPv4; the owner uid', () => {
    const tcp =
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n' +
      '   0: 0100007F:1F90 0A64330A:1538 01 00000000:00000000 00:00000000 00000000   999        0 4242 1 0 20 4 30 10 -1\n';
    expect(parseProcNet(tcp, 'tcp')).toEqual([
      { proto: 'tcp', local: '127.0.0.1', localPort: 8080, peer: '10.51.100.10', peerPort: 5432, uid: 999, inode: '4242' },
    ]);
    const tcp6 =
      '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n' +
      '   0: 000000FD000000000000000001000000:A1B2 0000AAFD000000000000000002000000:1538 01 00000000:00000000 00:00000000 00000000     0        0 77 1 0\n' +
      '   1: 0000000000000000FFFF00000100007F:0050 0000000000000000FFFF00000A64330A:1538 01 00000000:00000000 00:00000000 00000000     0        0 78 1 0\n';
    expect(parseProcNet(tcp6, 'tcp')).toEqual([
      { proto: 'tcp', local: 'fd00::1', localPort: 0xa1b2, peer: 'fdaa::2', peerPort: 5432, uid: 0, inode: '77' },
      { proto: 'tcp', local: '127.0.0.1', localPort: 80, peer: '10.51.100.10', peerPort: 5432, uid: 0, inode: '78' },
    ]);
  });
});

describe('parsePasswd', () => {
  test('uid -> name; the first entry for a uid wins; comments and broken lines are ignored', () => {
    const names = parsePasswd(
      'root:x:0:0:root:/root:/bin/bash\npostgres:x:999:999::/var/lib/postgresql:/bin/sh\nalias:x:999:999::/:/bin/sh\n# x\nbroken\n',
    );
    expect([...names]).toEqual([
      [0, 'root'],
      [999, 'postgres'],
    ]);
  });
});

describe('socketOwners', () => {
  let server: Server | null = null;
  let client: Socket | null = null;
  afterEach(() => {
    client?.destroy();
    server?.close();
  });

  test('finds this process as the owner of its own connection, with its command line; a socket nobody holds is absent', async () => {
    server = createServer((s) => s.on('error', () => {}));
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    client = connect(port, '127.0.0.1');
    await new Promise((r) => client!.once('connect', r));
    const mine = { proto: 'tcp', local: '127.0.0.1', localPort: client.localPort!, peer: '127.0.0.1', peerPort: port };
    const nobody = { proto: 'tcp', local: '127.0.0.1', localPort: 1, peer: '127.0.0.1', peerPort: 2 };
    const owners = await socketOwners([mine, nobody]);
    expect(owners.get(mine)).toMatchObject({ pid: process.pid, uid: process.getuid!() });
    expect(owners.get(mine)!.command).toContain('node');
    expect(owners.has(nobody)).toBe(false);
  });
});
