export * from './errors.ts';
export * from './manifest.ts';
export * from './segment/index.ts';
export * from './store/index.ts';
