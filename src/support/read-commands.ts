// The read-only commands support staff run: status and explain. As root they
// read the kernel themselves; without root they ask the running agent on its
// query socket for the same live answer, and fall back to the agent's state
// files when no agent answers (said on status's verdict line).
import { askAgent } from '../agent/query-socket.js';
import { DEFAULT_CONFIG, loadConfig } from '../input/config.js';
import { currentFlag } from '../input/flag.js';
import { conntrackTable } from '../kernel/netlink/ctnetlink.js';
import { LibNft } from '../kernel/nft/index.js';
import { TABLE } from '../kernel/ruleset.js';
import { explainAt, ExplainInputError, parseAddressInput, type Explanation } from './explain.js';
import { printableJson, printableText } from './printable.js';
import { formatStatus } from './status-format.js';
import { collectStatus, STATUS_EXIT, type StatusReport } from './status.js';

const root = () => process.geteuid?.() === 0;

export async function statusCommand(o: { stateDir: string; config: string; json: boolean; all: boolean }): Promise<number> {
  const config = await loadConfig(o.config).catch(() => DEFAULT_CONFIG);
  let report: StatusReport | null = null;
  if (!root()) {
    const live = await askAgent(o.stateDir, { query: 'status' });
    if (live?.ok) report = live.result as StatusReport;
  }
  report ??= await collectStatus({
    stateDir: o.stateDir,
    nft: root() ? new LibNft(TABLE) : null,
    conntrack: root() ? conntrackTable() : null,
    retireAfterSeconds: config.retireAfterSeconds,
    flag: await currentFlag(process.env, config.enabled).catch(() => undefined),
  });
  process.stdout.write(
    o.json ? printableJson(JSON.stringify(report, null, 2)) + '\n' : printableText(formatStatus(report, { all: o.all })) + '\n',
  );
  return STATUS_EXIT[report.health];
}

export async function explainCommand(o: { input: string; stateDir: string; json: boolean }): Promise<number> {
  let e: Explanation | null = null;
  try {
    parseAddressInput(o.input);
    if (!root()) {
      const live = await askAgent(o.stateDir, { query: 'explain', address: o.input });
      if (live?.ok) e = live.result as Explanation;
    }
    e ??= await explainAt(o.input, o.stateDir, root() ? new LibNft(TABLE) : null);
  } catch (err) {
    if (!(err instanceof ExplainInputError)) throw err;
    process.stderr.write(`addrmap: ${printableText(err.message)}\n`);
    return 2;
  }
  process.stdout.write(o.json ? printableJson(JSON.stringify(e, null, 2)) + '\n' : printableText(e.lines.join('\n')) + '\n');
  return e.translated ? 0 : 1;
}
