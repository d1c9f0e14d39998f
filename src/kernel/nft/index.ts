export * from './types.js';
export { LibNft } from './lib.js';
export { FakeNft } from './fake.js';
export { encodeBatch, decodeListing } from './json.js';
