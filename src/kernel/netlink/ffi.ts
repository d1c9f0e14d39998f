// The C functions addrmap calls in-process, through the koffi FFI addon.
// Loaded on first use, once: a guest whose image cannot load the addon (an
// unusual libc, a read-only noexec location) still works through the
// programs it would otherwise spawn, and says so.
import { createRequire } from 'node:module';
import { existsSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type * as KoffiModule from 'koffi';

type Koffi = typeof KoffiModule;

export interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  send(fd: number, buf: Buffer, len: number, flags: number): number;
  recv(fd: number, buf: Buffer, len: number, flags: number): number;
  setsockopt(fd: number, level: number, name: number, value: Buffer, len: number): number;
  getsockopt(fd: number, level: number, name: number, value: Buffer, len: Buffer): number;
  /** A counter descriptor (eventfd(2)): written to wake a poll waiting on another thread. */
  eventfd(initval: number, flags: number): number;
  write(fd: number, buf: Buffer, len: number): number;
  /**
   * poll(2) on a libuv worker thread, for a descriptor libuv cannot watch
   * (a netlink socket): the event loop stays free and nothing wakes until a
   * descriptor is ready. Resolves with the number of ready descriptors, or
   * -errno. `fds` (struct pollfd[]) must stay referenced until it settles.
   */
  pollOnWorker(fds: Buffer, nfds: number, timeoutMs: number): Promise<number>;
  close(fd: number): number;
  /** waitpid(2) without its status: the pid reaped, 0 when it has not ended, -1 on error. */
  waitpid(pid: number, options: number): number;
  /** errno after the last failed call. */
  errno(): number;
}

let loaded: Libc | Error | undefined;
let addon: Koffi | Error | undefined;

/**
 * The koffi module itself, loaded once, for modules that bind C libraries of
 * their own (libnftables); or why it cannot be loaded here.
 */
export function koffiAddon(): Koffi | Error {
  if (addon === undefined) {
    try {
      addon = loadKoffi();
    } catch (e) {
      addon = e as Error;
    }
  }
  return addon;
}

/** libc through the FFI, or why it cannot be had here. */
export function libc(): Libc | Error {
  if (loaded === undefined) {
    const k = koffiAddon();
    try {
      if (k instanceof Error) throw k;
      loaded = bindLibc(k);
    } catch (e) {
      loaded = new Error(`in-process kernel access unavailable: ${(e as Error).message}`);
    }
  }
  return loaded;
}

/**
 * The addon from node_modules when addrmap runs from its sources or npm
 * package; otherwise the copy shipped beside the bundle or the executable
 * (koffi's own loader looks only inside node_modules).
 */
function loadKoffi(): Koffi {
  const script = process.argv[1] ? safeRealpath(process.argv[1]) : undefined;
  for (const from of [script, join(process.cwd(), 'package.json')]) {
    if (!from) continue;
    try {
      return createRequire(from)('koffi') as Koffi;
    } catch {
      // not installed there: try the shipped addon
    }
  }
  const musl = !(process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime;
  const name = musl ? 'koffi-musl.node' : 'koffi.node';
  // Beside the bundle (dist/), or where the packages install it for the
  // standalone executable (/usr/bin/addrmap -> /usr/lib/addrmap/).
  const dirs = [script && dirname(script), join(dirname(process.execPath), '../lib/addrmap'), dirname(process.execPath)];
  for (const dir of dirs) {
    if (!dir || !existsSync(join(dir, name))) continue;
    const mod = { exports: {} as Koffi };
    process.dlopen(mod, join(dir, name));
    return mod.exports;
  }
  throw new Error(`the koffi addon (${name}) is neither installed nor shipped beside addrmap`);
}

function safeRealpath(p: string): string | undefined {
  try {
    return realpathSync(p);
  } catch {
    return undefined;
  }
}

function bindLibc(koffi: Koffi): Libc {
  // The process's own symbols: node is linked against the C library, whichever
  // it is (glibc's libc.so.6, musl's libc.musl-*.so.1).
  const lib = koffi.load(null);
  // Pointer-sized results come back as numbers or bigints depending on the
  // value; every caller wants a number.
  const f = (decl: string) => {
    const fn = lib.func(decl) as (...args: unknown[]) => number | bigint;
    return (...args: unknown[]) => Number(fn(...args));
  };
  // Not through f(): the worker-thread variant (.async) is the one called.
  const poll = lib.func('int poll(void *fds, unsigned long nfds, int timeout)');
  const waitpid = f('int waitpid(int pid, _Out_ int *status, int options)');
  return {
    socket: f('int socket(int domain, int type, int protocol)'),
    bind: f('int bind(int fd, const void *addr, uint32_t len)'),
    send: f('intptr_t send(int fd, const void *buf, size_t len, int flags)'),
    recv: f('intptr_t recv(int fd, _Out_ void *buf, size_t len, int flags)'),
    setsockopt: f('int setsockopt(int fd, int level, int name, const void *value, uint32_t len)'),
    getsockopt: f('int getsockopt(int fd, int level, int name, _Out_ void *value, _Inout_ void *len)'),
    eventfd: f('int eventfd(unsigned int initval, int flags)'),
    write: f('intptr_t write(int fd, const void *buf, size_t len)'),
    pollOnWorker: (fds, nfds, timeoutMs) =>
      new Promise<number>((resolve, reject) => {
        // koffi restores the worker's errno for the callback's duration only.
        poll.async(fds, nfds, timeoutMs, (err: unknown, n: number) => {
          if (err) reject(err instanceof Error ? err : new Error('poll on a worker thread failed'));
          else resolve(n < 0 ? -koffi.errno() : n);
        });
      }),
    close: f('int close(int fd)'),
    waitpid: (pid, options) => waitpid(pid, null, options),
    errno: () => koffi.errno(),
  };
}
