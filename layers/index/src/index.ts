export * from './errors.ts';
export * from './segment/index.ts';
export * from './store/index.ts';
