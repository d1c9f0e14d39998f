// libnftables in-process, through the koffi FFI: the library nft itself is a
// thin front end to, so the agent speaks nftables without starting a program.
// One context per library for the process's life, its commands one at a time:
// the context's output and error buffers hold the last command's answer only.
// Every command runs on one of koffi's worker threads, so a listing of 100k
// elements (seconds inside libnftables) leaves the event loop free.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type * as KoffiModule from 'koffi';
import { koffiAddon } from '../netlink/ffi.js';

/** The soname addrmap binds (Debian's and Ubuntu's package libnftables1). */
export const LIBNFTABLES = 'libnftables.so.1';

// From nftables/libnftables.h (nft_ctx_new's flags, and the output flags of
// nft_ctx_output_set_flags); 1 << 4 is what `nft -j` sets.
const NFT_CTX_DEFAULT = 0;
const NFT_CTX_OUTPUT_JSON = 1 << 4;

/** Beyond this many bytes in or out, the memory a command took is handed back after it. */
const LARGE = 1 << 20;

export interface CommandResult {
  ok: boolean;
  /** The output buffer: JSON for listings (NFT_CTX_OUTPUT_JSON), empty for batches. */
  output: string;
  /** The error buffer: what nft would have printed on stderr. */
  error: string;
}

type Koffi = typeof KoffiModule;
type Fn = ReturnType<KoffiModule.LibraryHandle['func']>;

interface Binding {
  ctxNew: Fn;
  free: Fn;
  setFlags: Fn;
  bufferOutput: Fn;
  unbufferOutput: Fn;
  bufferError: Fn;
  output: Fn;
  error: Fn;
  run: Fn;
  setDryRun: Fn;
  /** glibc's malloc_trim; musl has none (and keeps less in reserve). */
  trim: Fn | null;
}

const contexts = new Map<string, NftContext | Error>();

export class NftContext {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly fns: Binding,
    private readonly ctx: unknown,
    /** The library file's own name (its soname resolved), e.g. libnftables.so.1.1.0. */
    readonly library: string,
  ) {}

  /**
   * The process's context for `soname` (or a library file's path), opened on
   * first use; or why it cannot be had here (the addon, the library or a
   * context), the same Error each time. remedy: what to do when the library
   * will not load, which depends on who named it.
   */
  static shared(soname = LIBNFTABLES, remedy = 'install the libnftables1 package', name = ''): NftContext | Error {
    const key = `${soname}\0${name}`;
    let c = contexts.get(key);
    if (c === undefined) {
      try {
        c = NftContext.open(soname, remedy);
      } catch (e) {
        c = e as Error;
      }
      contexts.set(key, c);
    }
    return c;
  }

  private static open(soname: string, remedy: string): NftContext {
    const koffi = koffiAddon();
    if (koffi instanceof Error)
      throw new Error(`addrmap reaches libnftables through the koffi FFI addon, which cannot load: ${koffi.message}`);
    let lib: KoffiModule.LibraryHandle;
    try {
      lib = koffi.load(soname);
    } catch (e) {
      throw new Error(`cannot load ${soname} (${(e as Error).message}); ${remedy}`, { cause: e });
    }
    let fns: Binding;
    try {
      fns = bind(koffi, lib);
    } catch (e) {
      // Another library at that name: koffi names the first function it lacks.
      throw new Error(`${soname} is not libnftables (${(e as Error).message}); ${remedy}`, { cause: e });
    }
    const ctx = fns.ctxNew(NFT_CTX_DEFAULT) as unknown;
    if (!ctx) throw new Error(`${soname}: nft_ctx_new failed (out of memory?)`);
    if (fns.bufferOutput(ctx) !== 0 || fns.bufferError(ctx) !== 0) {
      fns.free(ctx);
      throw new Error(`${soname}: cannot buffer the context's output`);
    }
    fns.setFlags(ctx, NFT_CTX_OUTPUT_JSON);
    return new NftContext(fns, ctx, loadedFile(soname));
  }

  /**
   * Runs one command buffer (nft syntax or a JSON document) once the commands
   * before it are done; with dryRun, validated by the kernel and not
   * committed (nft --check).
   */
  run(command: string, options: { dryRun?: boolean } = {}): Promise<CommandResult> {
    const job = this.queue.then(() => this.perform(command, options.dryRun ?? false));
    this.queue = job.catch(() => {});
    return job;
  }

  private async perform(command: string, dryRun: boolean): Promise<CommandResult> {
    this.fns.setDryRun(this.ctx, dryRun);
    const rc = Number(await async(this.fns.run, this.ctx, command));
    const result = { ok: rc === 0, output: String(this.fns.output(this.ctx) ?? ''), error: String(this.fns.error(this.ctx) ?? '') };
    if (command.length > LARGE || result.output.length > LARGE) await this.release();
    return result;
  }

  /**
   * After a large command the context still holds its cache (every element
   * of a listed map) and its output buffer at that size, and glibc keeps the
   * freed pages. An empty command needs no cache, so libnftables drops it;
   * re-buffering frees the buffer; malloc_trim returns the pages (glibc
   * keeps them otherwise: trimming alone gives back about half). At 100k
   * elements all three take RSS after a listing from several hundred MB back
   * to near where it was (libnftables 1.0.6).
   */
  private async release(): Promise<void> {
    await async(this.fns.run, this.ctx, '');
    this.fns.unbufferOutput(this.ctx);
    this.fns.bufferOutput(this.ctx);
    if (this.fns.trim) await async(this.fns.trim, 0);
  }
}

function bind(koffi: Koffi, lib: KoffiModule.LibraryHandle): Binding {
  // struct nft_ctx is opaque: a pointer handed back and forth.
  const f = (decl: string) => lib.func(decl);
  let trim: Fn | null = null;
  try {
    trim = koffi.load(null).func('int malloc_trim(size_t pad)');
  } catch {
    // not glibc: nothing to trim
  }
  return {
    ctxNew: f('void *nft_ctx_new(uint32_t flags)'),
    free: f('void nft_ctx_free(void *ctx)'),
    setFlags: f('void nft_ctx_output_set_flags(void *ctx, unsigned int flags)'),
    bufferOutput: f('int nft_ctx_buffer_output(void *ctx)'),
    unbufferOutput: f('int nft_ctx_unbuffer_output(void *ctx)'),
    bufferError: f('int nft_ctx_buffer_error(void *ctx)'),
    output: f('const char *nft_ctx_get_output_buffer(void *ctx)'),
    error: f('const char *nft_ctx_get_error_buffer(void *ctx)'),
    run: f('int nft_run_cmd_from_buffer(void *ctx, const char *buf)'),
    setDryRun: f('void nft_ctx_set_dry_run(void *ctx, bool dry)'),
    trim,
  };
}

function async(fn: Fn, ...args: unknown[]): Promise<unknown> {
  return new Promise((resolve, reject) => {
    // koffi fails a call with an Error (e.g. its queue of calls is full).
    fn.async(...args, (err: Error | null, res: unknown) => (err ? reject(err) : resolve(res)));
  });
}

/**
 * The file the dynamic loader picked for `soname`, as the process's map of
 * its memory names it: libnftables 1.0.6 has no call that tells its version.
 */
function loadedFile(soname: string): string {
  try {
    const stem = basename(soname).replace(/\.so.*$/, '.so');
    const line = readFileSync('/proc/self/maps', 'utf8')
      .split('\n')
      .find((l) => basename(l.split(/\s+/).pop() ?? '').startsWith(stem));
    if (line) return basename(line.split(/\s+/).pop()!);
  } catch {
    // no /proc: the soname is all there is to say
  }
  return basename(soname);
}
