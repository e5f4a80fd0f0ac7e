import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashFile, readFileHashed } from '../../../../layers/index/src/segment/hash-pool.ts';

let root: string;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'hash-pool-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('hashFile', () => {
  it('gives the sha256 and size of files of every size, many at once', async () => {
    // Sizes around the 512 KiB read piece, an empty file, and more jobs than workers.
    const sizes = [0, 1, 512 * 1024 - 1, 512 * 1024, 512 * 1024 + 1, 3 * 1024 * 1024 + 7, 100, 5000];
    const files = await Promise.all(
      sizes.map(async (size, i) => {
        const bytes = randomBytes(size);
        const path = join(root, `h${i}`);
        await writeFile(path, bytes);
        return { path, bytes };
      }),
    );
    const hashes = await Promise.all(files.map((f) => hashFile(f.path)));
    expect(hashes).toEqual(files.map((f) => ({ sha256: sha(f.bytes), bytes: f.bytes.length })));
  });

  it('rejects a missing file with its error code, and keeps serving', async () => {
    await expect(hashFile(join(root, 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
    const path = join(root, 'after');
    await writeFile(path, 'still works');
    expect((await hashFile(path)).bytes).toBe(11);
  });
});

describe('readFileHashed', () => {
  it('reads a file into shared memory and hashes it in the same pass', async () => {
    const bytes = randomBytes(2 * 1024 * 1024 + 13);
    const path = join(root, 'r');
    await writeFile(path, bytes);
    const out = await readFileHashed(path, bytes.length);
    expect(out.bytes).toBe(bytes.length);
    expect(out.sha256).toBe(sha(bytes));
    expect(out.data.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(Buffer.from(out.data).equals(bytes)).toBe(true);
  });

  it('tells a shorter file and a longer one from the size expected', async () => {
    const path = join(root, 'sized');
    await writeFile(path, randomBytes(1000));
    const shorter = await readFileHashed(path, 1200);
    expect(shorter.bytes).toBe(1000);
    expect(shorter.data).toHaveLength(1000);
    const longer = await readFileHashed(path, 800);
    expect(longer.bytes).toBe(801);
    expect(longer.data).toHaveLength(800);
  });
});
