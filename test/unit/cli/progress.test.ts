import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  createDownloadProgress,
  type DownloadProgressEvent,
  formatBytes,
} from '../../../cli/src/progress.ts';

/** A stream that records what is written, claiming to be a terminal or not. */
function capture(isTTY: boolean): { stream: PassThrough & { isTTY: boolean }; text: () => string } {
  const stream = Object.assign(new PassThrough(), { isTTY });
  const chunks: string[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk.toString('utf8')));
  return { stream, text: () => chunks.join('') };
}

/** Events for a download of `total` bytes in `steps` equal chunks, `msPerStep` apart on a fake clock. */
function feed(
  progress: (event: DownloadProgressEvent) => void,
  clock: { t: number },
  file: string,
  total: number,
  steps: number,
  msPerStep: number,
): void {
  for (let i = 0; i <= steps; i++) {
    progress({ file, receivedBytes: Math.round((total * i) / steps), totalBytes: total, resumedFrom: 0 });
    clock.t += msPerStep;
  }
}

/** Control characters other than the newline: what a log file must not receive. */
function controlCharacters(text: string): string[] {
  return [...text].filter((c) => c !== '\n' && (c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f));
}

describe('formatBytes', () => {
  it('uses decimal units with one decimal', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(1500)).toBe('1.5 kB');
    expect(formatBytes(27_400_000)).toBe('27.4 MB');
    expect(formatBytes(999_960)).toBe('1.0 MB');
    expect(formatBytes(1_340_000_000)).toBe('1.3 GB');
  });
});

describe('createDownloadProgress', () => {
  it('prints plain lines, one per 10%, without control characters on a non-TTY stream', async () => {
    const { stream, text } = capture(false);
    const clock = { t: 0 };
    const progress = createDownloadProgress(stream, { now: () => clock.t });

    feed(progress, clock, 'model.safetensors', 27_400_000, 100, 100);
    feed(progress, clock, 'vocab.txt', 213_450, 2, 10);
    await new Promise((resolve) => setImmediate(resolve));

    const out = text();
    expect(controlCharacters(out)).toEqual([]);
    const lines = out.trimEnd().split('\n');
    const model = lines.filter((l) => l.startsWith('model.safetensors'));
    expect(model).toHaveLength(11);
    expect(model[0]).toMatch(/^model\.safetensors {2}0% {2}0\.0\/27\.4 MB$/);
    expect(model[5]).toMatch(/ 50% {2}13\.7\/27\.4 MB {2}2\.7 MB\/s {2}ETA 5s$/);
    expect(model.at(-1)).toMatch(/100% {2}27\.4\/27\.4 MB/);
    expect(lines.filter((l) => l.startsWith('vocab.txt')).at(-1)).toMatch(/100% {2}213\.[45]\/213\.[45] kB/);
  });

  it('redraws one line with \\r on a TTY, at most ~10 times a second, and ends it with a newline', async () => {
    const { stream, text } = capture(true);
    const clock = { t: 0 };
    const progress = createDownloadProgress(stream, { now: () => clock.t });

    // 1000 events, 1 ms apart: one second of download.
    feed(progress, clock, 'model.safetensors', 436_000_000, 1000, 1);
    await new Promise((resolve) => setImmediate(resolve));

    const out = text();
    const redraws = out.split('\r').length - 1;
    expect(redraws).toBeGreaterThanOrEqual(10);
    expect(redraws).toBeLessThanOrEqual(12);
    expect(out.endsWith('\n')).toBe(true);
    expect(out.match(/\n/g)).toHaveLength(1);
    expect(out).toMatch(
      /\rmodel\.safetensors {2}\[#{20}\] {2}100% {2}436\.0\/436\.0 MB {2}436\.0 MB\/s *\n$/,
    );
    const middle = out.split('\r').find((frame) => frame.includes(' 50%'));
    expect(middle).toMatch(/\[#{10}-{10}\] {3}50% {2}218\.0\/436\.0 MB {2}436\.0 MB\/s {2}ETA 1s/);
  });

  it('measures speed from where a resumed download started', async () => {
    const { stream, text } = capture(false);
    let t = 0;
    const progress = createDownloadProgress(stream, { now: () => t });

    progress({ file: 'w.bin', receivedBytes: 5_000_000, totalBytes: 10_000_000, resumedFrom: 5_000_000 });
    t = 1000;
    progress({ file: 'w.bin', receivedBytes: 6_000_000, totalBytes: 10_000_000, resumedFrom: 5_000_000 });
    await new Promise((resolve) => setImmediate(resolve));

    expect(text()).toBe('w.bin  50%  5.0/10.0 MB\nw.bin  60%  6.0/10.0 MB  1.0 MB/s  ETA 4s\n');
  });
});
