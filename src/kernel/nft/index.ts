export * from './types.js';
export { ExecNft, type NftInfo } from './exec.js';
export { FakeNft } from './fake.js';
export { encodeBatch, decodeListing } from './json.js';
