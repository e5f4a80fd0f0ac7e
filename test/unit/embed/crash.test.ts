import { spawn } from 'node:child_process';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOB_ENV } from '../../../functions/embed/src/config.ts';
import { collectFiles } from '../../../functions/embed/src/local.ts';
import { listQuarantine } from '../../../functions/embed/src/quarantine.ts';
import { localObjectRef } from '../../../functions/embed/src/sources.ts';
import { makeJobSpec } from '../../../functions/embed/src/spec.ts';
import { seededUniform } from '../../../layers/encoder/src/fixture.ts';
import { LocalDirectoryStore } from '../../../layers/index/src/store/local.ts';
import { chunksPerNote, writeNoteSet } from '../../helpers/embed.ts';
import { tempDir, tinyBundle } from '../../helpers/encoder.ts';

const JOB_MAIN = fileURLToPath(new URL('../../../functions/embed/src/job-main.ts', import.meta.url));
const KILLS = 20;
const KILLS_PER_ROUND = 10;

let root: { dir: string; cleanup: () => Promise<void> };
let bundle: string;

beforeAll(async () => {
  root = await tempDir('embed-crash-');
  bundle = await tinyBundle(root.dir);
});
afterAll(async () => root.cleanup());

/**
 * Runs the job container's entry point on a spec file. With `killAfterMs`, SIGKILLs it that long
 * after it logs that the job started (or lets it finish if it is quicker). Resolves with its exit
 * code (null when killed) and how long the job ran after starting.
 */
function runJobProcess(
  specPath: string,
  killAfterMs?: number,
): Promise<{ code: number | null; jobMs: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', JOB_MAIN, specPath], {
      env: {
        ...process.env,
        [JOB_ENV.modelDir]: bundle,
        [JOB_ENV.provider]: 'cpu',
        // Small parts and blocks: many commits, so kills land between and inside them.
        [JOB_ENV.partChunks]: '4',
        [JOB_ENV.encodeBlock]: '4',
        [JOB_ENV.staleLockMs]: '300',
        TMPDIR: join(root.dir, 'tmp'),
        POWERTOOLS_LOG_LEVEL: 'INFO',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let started: number | undefined;
    let timer: NodeJS.Timeout | undefined;
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
      if (started === undefined && output.includes('embed job started')) {
        started = performance.now();
        if (killAfterMs !== undefined) timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      }
    });
    child.stderr.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0 && code !== null) reject(new Error(`job exited ${code}: ${output.slice(-2000)}`));
      else resolve({ code, jobMs: started === undefined ? 0 : performance.now() - started });
    });
  });
}

describe('the job process killed at random points', () => {
  it('ends, once re-run to completion, with every note exactly once and nothing extra quarantined', {
    timeout: 180_000,
  }, async () => {
    await mkdir(join(root.dir, 'tmp'), { recursive: true });
    const set = await writeNoteSet(join(root.dir, 'notes'), { files: 3, notesPerFile: 3, textNotes: 3 });
    const refs = await Promise.all((await collectFiles([set.root])).map(localObjectRef));

    // A clean run gives the reference: chunks per note and the quarantined records.
    const cleanDir = join(root.dir, 'clean');
    const cleanSpec = makeJobSpec(cleanDir, refs);
    const cleanStore = new LocalDirectoryStore(cleanDir, { fsync: false });
    const cleanPath = join(root.dir, 'clean-spec.json');
    await writeFile(cleanPath, JSON.stringify(cleanSpec));
    const clean = await runJobProcess(cleanPath);
    expect(clean.code).toBe(0);
    const reference = await chunksPerNote(cleanStore, join(root.dir, 'cache-clean'));
    expect([...reference.perNote.keys()].sort()).toEqual(set.noteIds);
    const cleanQuarantine = (await listQuarantine(cleanStore, cleanSpec.id)).map((q) => q.reason).sort();
    expect(cleanQuarantine).toEqual(set.quarantineReasons);

    // Rounds on fresh indexes: each kills the job KILLS_PER_ROUND times at random points, runs it
    // to completion and checks the index. A kill is drawn within the work a run has left (the
    // clean run's time × the share of objects without a ledger entry yet), so it lands in the job.
    const random = seededUniform(20260101);
    let killed = 0;
    for (let round = 0; killed < KILLS; round++) {
      const dir = join(root.dir, `crashed-${round}`);
      const spec = makeJobSpec(dir, refs);
      const specPath = join(root.dir, `spec-${round}.json`);
      await writeFile(specPath, JSON.stringify(spec));
      for (let k = 0; k < KILLS_PER_ROUND; k++) {
        const entries = await readdir(join(dir, 'ledger', 'objects')).catch(() => []);
        const left = Math.max(0.05, 1 - entries.length / refs.length);
        const { code } = await runJobProcess(specPath, random() * clean.jobMs * left);
        if (code === null) killed++;
      }
      expect((await runJobProcess(specPath)).code).toBe(0);
      const store = new LocalDirectoryStore(dir, { fsync: false });
      const after = await chunksPerNote(store, join(root.dir, `cache-crashed-${round}`));
      expect(Object.fromEntries([...after.perNote].sort())).toEqual(
        Object.fromEntries([...reference.perNote].sort()),
      );
      expect(after.chunks).toBe(reference.chunks);
      expect((await listQuarantine(store, spec.id)).map((q) => q.reason).sort()).toEqual(cleanQuarantine);
    }
    expect(killed).toBeGreaterThanOrEqual(KILLS);
  });
});
