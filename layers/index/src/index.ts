export * from './compaction.ts';
export * from './errors.ts';
export * from './manifest.ts';
export * from './reader.ts';
export * from './segment/index.ts';
export * from './store/index.ts';
export * from './verify.ts';
export * from './writer.ts';
