export * from './errors.ts';
export * from './segment/index.ts';
