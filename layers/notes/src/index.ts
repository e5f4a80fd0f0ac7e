export * from './chunks.ts';
export * from './context.ts';
export * from './errors.ts';
export * from './readers/index.ts';
export * from './sections.ts';
export * from './sentences.ts';
export * from './types.ts';
