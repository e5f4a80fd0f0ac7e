// `npm run bench -- <name>…` runs the named benchmarks (all when none is named). Each prints a
// table, then one JSON line last.
import { runEncoderBench } from './encoder.ts';
import { runIndexBench } from './index-bench.ts';
import { runIngestBench } from './ingest-bench.ts';
import { runNotesBench } from './notes.ts';
import { runQueryBench } from './query-bench.ts';

const benches: Record<string, () => Promise<void>> = {
  encoder: runEncoderBench,
  index: runIndexBench,
  ingest: runIngestBench,
  notes: runNotesBench,
  query: runQueryBench,
};
const names = process.argv.slice(2).filter((a) => !a.startsWith('-'));
for (const name of names.length ? names : Object.keys(benches)) {
  const bench = benches[name];
  if (!bench) {
    process.stderr.write(`unknown benchmark ${name}; available: ${Object.keys(benches).join(', ')}\n`);
    process.exit(2);
  }
  await bench();
}
