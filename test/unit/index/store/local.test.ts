/**
 * LocalDirectoryStore beyond the shared contract: conditional writes raced by separate processes
 * (the OS primitives, not one event loop, decide the winner), key validation, lock recovery, and
 * openStore's choice of adapter.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PreconditionFailedError, StoreError } from '../../../../layers/index/src/errors.ts';
import { LocalDirectoryStore, openStore, S3Store } from '../../../../layers/index/src/store/index.ts';

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../..');
const storeModule = join(repoRoot, 'layers/index/src/store/local.ts');
const errorsModule = join(repoRoot, 'layers/index/src/errors.ts');

/**
 * Starts `count` child processes that each run `body` (an async ES module snippet with `store`,
 * `PreconditionFailedError` and `i`, the process number) at the same moment: each reports ready,
 * spins until the parent creates a go file, then runs. Resolves with each process's stdout.
 */
async function raceProcesses(root: string, count: number, body: (i: number) => string): Promise<string[]> {
  const go = join(root, 'go');
  const children = Array.from({ length: count }, (_, i) => {
    const script = `
      const { existsSync } = await import('node:fs');
      const { LocalDirectoryStore } = await import(${JSON.stringify(storeModule)});
      const { PreconditionFailedError } = await import(${JSON.stringify(errorsModule)});
      const store = new LocalDirectoryStore(${JSON.stringify(join(root, 'store'))});
      process.stdout.write('ready\\n');
      while (!existsSync(${JSON.stringify(go)})) {}
      ${body(i)}`;
    const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const ready = new Promise<void>((done) => {
      proc.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        if (stdout.startsWith('ready\n')) done();
      });
    });
    proc.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<string>((done, fail) => {
      proc.on('close', (code) =>
        code === 0
          ? done(stdout.slice('ready\n'.length).trim())
          : fail(new Error(`child ${i} failed:\n${stderr}`)),
      );
    });
    return { ready: Promise.race([ready, exited.then(() => undefined)]), exited };
  });
  await Promise.all(children.map((c) => c.ready));
  await writeFile(go, '');
  const outputs = await Promise.all(children.map((c) => c.exited));
  await rm(go, { force: true });
  return outputs;
}

describe('LocalDirectoryStore', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'local-store-'));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it('lets exactly one of 6 processes win a create-only race, and loses no CAS increment across 4 processes', async () => {
    const racers = await raceProcesses(
      root,
      6,
      (
        i,
      ) => `try { await store.put('manifests/00000001.json', 'process ${i}', { ifNoneMatch: '*' }); console.log('won'); }
              catch (e) { if (!(e instanceof PreconditionFailedError)) throw e; console.log('lost'); }`,
    );
    expect(racers.filter((r) => r === 'won')).toHaveLength(1);
    expect(racers.filter((r) => r === 'lost')).toHaveLength(5);
    const winner = racers.indexOf('won');
    const store = new LocalDirectoryStore(join(root, 'store'));
    expect(new TextDecoder().decode(await store.get('manifests/00000001.json'))).toBe(`process ${winner}`);

    await store.put('counter', '0');
    await raceProcesses(
      root,
      4,
      () => `for (let n = 0; n < 10; n++) {
               for (;;) {
                 const info = await store.head('counter');
                 const value = Number(new TextDecoder().decode(await store.get('counter')));
                 try { await store.put('counter', String(value + 1), { ifMatch: info.etag }); break; }
                 catch (e) { if (!(e instanceof PreconditionFailedError)) throw e; }
               }
             }`,
    );
    expect(new TextDecoder().decode(await store.get('counter'))).toBe('40');
  }, 30_000);

  it('refuses invalid and reserved keys', async () => {
    const store = new LocalDirectoryStore(root);
    for (const key of ['', '/abs', 'a//b', '../escape', 'a/./b', 'a\\b', '.store/locks/x']) {
      await expect(store.put(key, 'x')).rejects.toBeInstanceOf(TypeError);
    }
  });

  it('refuses both conditions at once', async () => {
    await expect(
      new LocalDirectoryStore(root).put('k', 'x', { ifNoneMatch: '*', ifMatch: 'e' }),
    ).rejects.toThrow(/not both/);
  });

  it('hides its temporary and lock files from list and leaves none behind', async () => {
    const store = new LocalDirectoryStore(root);
    await store.put('a', '1', { ifNoneMatch: '*' });
    await expect(store.put('a', '2', { ifNoneMatch: '*' })).rejects.toBeInstanceOf(PreconditionFailedError);
    await store.put('a', '3');
    const listed: string[] = [];
    for await (const o of store.list('')) listed.push(o.key);
    expect(listed).toEqual(['a']);
    expect(await readdir(join(root, '.store', 'tmp'))).toEqual([]);
    expect(await readdir(join(root, '.store', 'locks'))).toEqual([]);
  });

  it('removes a lock left by a crashed writer once it is older than staleLockMs', async () => {
    const store = new LocalDirectoryStore(root, { staleLockMs: 1_000 });
    await store.put('k', 'v0');
    const locks = join(root, '.store', 'locks');
    await mkdir(locks, { recursive: true });
    const { createHash } = await import('node:crypto');
    const lock = join(locks, `${createHash('sha256').update('k').digest('hex')}.lock`);
    await writeFile(lock, '');
    const old = new Date(Date.now() - 10_000);
    await utimes(lock, old, old);
    await store.put('k', 'v1');
    expect(new TextDecoder().decode(await store.get('k'))).toBe('v1');
  });

  it('gives up on a live lock after lockTimeoutMs with a StoreError', async () => {
    const store = new LocalDirectoryStore(root, { lockTimeoutMs: 100 });
    const locks = join(root, '.store', 'locks');
    await mkdir(locks, { recursive: true });
    const { createHash } = await import('node:crypto');
    await writeFile(join(locks, `${createHash('sha256').update('k').digest('hex')}.lock`), '');
    await expect(store.put('k', 'v')).rejects.toBeInstanceOf(StoreError);
  });

  it('changes the etag on every write of new content and keeps it for identical bytes', async () => {
    const store = new LocalDirectoryStore(root);
    const a = await store.put('k', 'one');
    const b = await store.put('k', 'two');
    const c = await store.put('k', 'one');
    expect(b.etag).not.toBe(a.etag);
    expect(c.etag).toBe(a.etag);
  });
});

describe('openStore', () => {
  it('opens a directory store for a path or a file:// URL', () => {
    const fromPath = openStore('/tmp/some/index');
    expect(fromPath).toBeInstanceOf(LocalDirectoryStore);
    expect(fromPath.location).toBe('/tmp/some/index');
    expect(openStore('file:///tmp/some/index').location).toBe('/tmp/some/index');
  });

  it('opens an S3 store for s3://bucket/prefix', () => {
    const store = openStore('s3://my-bucket/indexes/main/', { s3: { region: 'eu-west-1' } });
    expect(store).toBeInstanceOf(S3Store);
    expect(store.location).toBe('s3://my-bucket/indexes/main');
    expect(openStore('s3://my-bucket').location).toBe('s3://my-bucket/');
  });

  it('refuses an s3:// URI without a bucket and other schemes', () => {
    expect(() => openStore('s3:///x')).toThrow(StoreError);
    expect(() => openStore('https://example.com/x')).toThrow(StoreError);
  });
});
