// What the dynamic loader reads from an ELF file: its interpreter, the
// libraries it needs and where it says to look for them. Enough of ELF64
// little-endian (x86-64 and arm64) to check that a tree resolves every
// library inside itself, on any build machine, for either architecture.
import { readFile } from 'node:fs/promises';

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
const DT_RPATH = 15n;
const DT_RUNPATH = 29n;

export const ELF_MACHINE = { 62: 'x86-64', 183: 'arm64' };

/** True when the bytes start like an ELF file. */
export const isElf = (buf) => buf.length > 4 && buf.readUInt32BE(0) === 0x7f454c46;

/**
 * @returns {{ machine: string, interpreter: string | null, needed: string[], rpath: string[], runpath: string[] }}
 */
export function readElf(buf, name = 'file') {
  if (!isElf(buf)) throw new Error(`${name}: not an ELF file`);
  if (buf[4] !== 2 || buf[5] !== 1) throw new Error(`${name}: not ELF64 little-endian`);
  const machine = ELF_MACHINE[buf.readUInt16LE(18)] ?? `machine ${buf.readUInt16LE(18)}`;
  const phoff = Number(buf.readBigUInt64LE(32));
  const phentsize = buf.readUInt16LE(54);
  const phnum = buf.readUInt16LE(56);
  const loads = [];
  let interpreter = null;
  let dynamic = null;
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    const type = buf.readUInt32LE(p);
    const offset = Number(buf.readBigUInt64LE(p + 8));
    const vaddr = Number(buf.readBigUInt64LE(p + 16));
    const filesz = Number(buf.readBigUInt64LE(p + 32));
    if (type === PT_LOAD) loads.push({ offset, vaddr, filesz });
    if (type === PT_INTERP) interpreter = buf.toString('latin1', offset, offset + filesz).replace(/\0.*$/s, '');
    if (type === PT_DYNAMIC) dynamic = { offset, filesz };
  }
  const needed = [];
  const rpath = [];
  const runpath = [];
  if (dynamic) {
    const entries = [];
    let strtab = null;
    for (let at = dynamic.offset; at + 16 <= dynamic.offset + dynamic.filesz; at += 16) {
      const tag = buf.readBigInt64LE(at);
      const val = buf.readBigUInt64LE(at + 8);
      if (tag === 0n) break;
      if (tag === DT_STRTAB) strtab = Number(val);
      entries.push([tag, Number(val)]);
    }
    // DT_STRTAB is an address: the load segment holding it gives its place in the file.
    const seg = loads.find((l) => strtab !== null && strtab >= l.vaddr && strtab < l.vaddr + l.filesz);
    if (!seg) throw new Error(`${name}: its string table is outside every loaded segment`);
    const base = strtab - seg.vaddr + seg.offset;
    const str = (off) => buf.toString('latin1', base + off, buf.indexOf(0, base + off));
    for (const [tag, val] of entries) {
      if (tag === DT_NEEDED) needed.push(str(val));
      if (tag === DT_RPATH) rpath.push(...str(val).split(':'));
      if (tag === DT_RUNPATH) runpath.push(...str(val).split(':'));
    }
  }
  return { machine, interpreter, needed, rpath, runpath };
}

export async function readElfFile(path) {
  return readElf(await readFile(path), path);
}
