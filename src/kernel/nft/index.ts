export * from './types.js';
export { LibNft } from './lib.js';
export { encodeBatch, decodeListing } from './json.js';
