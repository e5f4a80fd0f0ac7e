import { type FileHandle, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  type AuditRecord,
  LocalAuditLog,
  openAuditSink,
  queryHash,
  StoreAuditSink,
} from '../../../functions/query/src/audit.ts';
import { tempDir } from '../../helpers/encoder.ts';

let root: string;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  ({ dir: root, cleanup } = await tempDir('audit-'));
});
afterAll(() => cleanup());

function record(id: string, time = '2026-11-26T10:00:00.000Z'): AuditRecord {
  return {
    format: 'cohort-audit/1',
    id,
    time,
    who: 'arn:aws:iam::123456789012:user/analyst',
    auth: 'iam',
    queryHash: queryHash(`query ${id}`),
    filters: null,
    assertion: 'affirmed',
    k: 50,
    minScore: null,
    page: false,
    exportFormat: 'json',
    patientsReturned: 3,
    totalPatients: 3,
    manifestVersion: 1,
    modelFingerprint: 'sha256:test',
  };
}

/** The .jsonl files under dir (paths relative to it), sorted. */
async function logFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, rel: string) => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(join(d, e.name), `${rel}${e.name}/`);
      else out.push(`${rel}${e.name}`);
    }
  };
  await walk(dir, '');
  return out.sort();
}

/** The prototype of node's FileHandle (the class itself is not exported), to spy on its methods. */
async function fileHandlePrototype(): Promise<FileHandle> {
  const handle = await open(join(root, 'probe'), 'w');
  await handle.close();
  return Object.getPrototypeOf(handle) as FileHandle;
}

/** The ids of the records in one log file (whole JSON lines, each ending in a newline), in order. */
async function idsIn(dir: string, file: string): Promise<string[]> {
  const text = await readFile(join(dir, file), 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text
    .trimEnd()
    .split('\n')
    .map((line) => (JSON.parse(line) as AuditRecord).id);
}

describe('LocalAuditLog', () => {
  it('appends records as JSON lines to one owner-only file per day, in the order written', async () => {
    const dir = join(root, 'order');
    const log = new LocalAuditLog(dir);
    const sync = vi.spyOn(await fileHandlePrototype(), 'datasync');
    try {
      // Concurrent writes: those arriving during a sync share the next one, and none is lost.
      await Promise.all(Array.from({ length: 40 }, (_, i) => log.write(record(`r${i}`))));
      expect(sync.mock.calls.length).toBeLessThanOrEqual(2);
      await log.write(record('last'));
    } finally {
      sync.mockRestore();
    }
    await log.close();
    const files = await logFiles(dir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^2026\/11\/26\/\d{8}T\d{9}Z-\d+-[0-9a-f]{8}\.jsonl$/);
    expect(await idsIn(dir, files[0]!)).toEqual([...Array.from({ length: 40 }, (_, i) => `r${i}`), 'last']);
    expect((await stat(join(dir, files[0]!))).mode & 0o777).toBe(0o600);
  });

  it('writes each day to its own folder, keeping one file per day across midnight', async () => {
    const dir = join(root, 'days');
    const log = new LocalAuditLog(dir);
    // Answers finishing around midnight arrive out of order.
    await log.write(record('before', '2026-11-26T23:59:59.990Z'));
    await log.write(record('after', '2026-11-27T00:00:00.001Z'));
    await log.write(record('late', '2026-11-26T23:59:59.999Z'));
    await log.write(record('next', '2026-11-27T00:00:00.002Z'));
    await log.write(record('two days on', '2026-11-28T00:00:00.000Z'));
    await log.close();
    const files = await logFiles(dir);
    expect(files.map((f) => f.slice(0, 10))).toEqual(['2026/11/26', '2026/11/27', '2026/11/28']);
    expect(await idsIn(dir, files[0]!)).toEqual(['before', 'late']);
    expect(await idsIn(dir, files[1]!)).toEqual(['after', 'next']);
    expect(await idsIn(dir, files[2]!)).toEqual(['two days on']);
  });

  it('keeps each process instance in its own file and never rewrites an earlier one', async () => {
    const dir = join(root, 'instances');
    const first = new LocalAuditLog(dir);
    await first.write(record('a'));
    await first.close();
    const [file] = await logFiles(dir);
    const before = await readFile(join(dir, file!), 'utf8');
    const second = new LocalAuditLog(dir);
    await second.write(record('b'));
    await second.close();
    const files = await logFiles(dir);
    expect(files).toHaveLength(2);
    expect(await readFile(join(dir, file!), 'utf8')).toBe(before);
  });

  it('abandons a file whose write or sync failed: the day goes on in a fresh file', async () => {
    const dir = join(root, 'failing');
    const log = new LocalAuditLog(dir);
    await log.write(record('ok'));
    const sync = vi.spyOn(await fileHandlePrototype(), 'datasync').mockRejectedValueOnce(new Error('EIO'));
    try {
      await expect(log.write(record('lost'))).rejects.toThrow('EIO');
      await log.write(record('next'));
    } finally {
      sync.mockRestore();
    }
    await log.close();
    const files = await logFiles(dir);
    expect(files).toHaveLength(2);
    // The failed record may stand unsynced in the abandoned file; nothing is written after it there.
    expect(await idsIn(dir, files[0]!)).toEqual(['ok', 'lost']);
    expect(await idsIn(dir, files[1]!)).toEqual(['next']);
  });

  it('rejects a record whose folder cannot be made, and writes once it can', async () => {
    const dir = join(root, 'blocked');
    const log = new LocalAuditLog(dir);
    await log.write(record('ok'));
    // A file where the next day's folder should be.
    await writeFile(join(dir, '2026', '11', '27'), 'in the way');
    await expect(log.write(record('blocked', '2026-11-27T08:00:00.000Z'))).rejects.toThrow();
    await rm(join(dir, '2026', '11', '27'));
    await log.write(record('retried', '2026-11-27T08:00:01.000Z'));
    await log.close();
    const files = await logFiles(dir);
    expect(files).toHaveLength(2);
    expect(await idsIn(dir, files[1]!)).toEqual(['retried']);
  });

  it('writes every record it accepted before closing, then refuses new ones', async () => {
    const dir = join(root, 'closing');
    const log = new LocalAuditLog(dir);
    await log.write(record('a'));
    const written = [log.write(record('b')), log.write(record('c'))];
    await log.close();
    await Promise.all(written);
    await expect(log.write(record('late'))).rejects.toThrow('closed');
    const files = await logFiles(dir);
    expect(await idsIn(dir, files[0]!)).toEqual(['a', 'b', 'c']);
  });
});

describe('openAuditSink', () => {
  it('writes a log for a directory or a file URL, and objects for an s3:// location', () => {
    expect(openAuditSink(join(root, 'x'))).toBeInstanceOf(LocalAuditLog);
    expect((openAuditSink(pathToFileURL(join(root, 'y')).href) as LocalAuditLog).dir).toBe(join(root, 'y'));
    expect(openAuditSink('s3://audit-bucket/audit/')).toBeInstanceOf(StoreAuditSink);
    expect(() => openAuditSink('ftp://host/audit')).toThrow('unsupported scheme');
  });
});
