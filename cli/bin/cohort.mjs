#!/usr/bin/env node
// The CLI runs from TypeScript sources through tsx, so `npx cohort` works right after `npm ci`
// without a build step.
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
