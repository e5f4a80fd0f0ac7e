import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The native addons (onnxruntime, tokenizers) are not fork-safe in every version; threads are.
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
