export * from './types.js';
export { ExecNft } from './exec.js';
export { FakeNft } from './fake.js';
export { encodeBatch, decodeListing } from './json.js';
