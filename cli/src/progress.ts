/**
 * A dependency-free progress display for byte downloads, fed with the events of `pullCheckpoint`.
 *
 * On a terminal one line per file is redrawn in place:
 * `model.safetensors  [########------------]  45%  196.2/436.0 MB  3.2 MB/s  ETA 1m15s`.
 * Elsewhere (CI logs, pipes) it prints one plain line per file per 10% instead, so that logs stay
 * readable and free of control characters.
 */

/** One progress report: the shape of `@cohort/encoder`'s `HubProgressEvent`, restated to keep the CLI decoupled. */
export interface DownloadProgressEvent {
  readonly file: string;
  readonly receivedBytes: number;
  readonly totalBytes: number | undefined;
  /** Bytes present before this request started; the speed counts only what arrives after it. */
  readonly resumedFrom: number;
}

/** Where the display goes: any stream with `write`; `isTTY` picks redraws over plain lines. */
export interface ProgressStream {
  write(text: string): unknown;
  readonly isTTY?: boolean;
}

/** Options of {@link createDownloadProgress}. */
export interface DownloadProgressOptions {
  /** Clock in ms. Default `Date.now`; tests pass a fake one. */
  readonly now?: () => number;
}

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB'] as const;
const BAR_WIDTH = 20;
// Redrawing more often than this only burns terminal bandwidth; the eye cannot follow it.
const REDRAW_INTERVAL_MS = 100;
// Without a known size, a plain-line stream still needs a sign of life now and then.
const UNKNOWN_SIZE_STEP = 10_000_000;

/** Formats a byte count in decimal units, as the hub shows sizes: `512 B`, `1.5 kB`, `436.0 MB`. */
export function formatBytes(bytes: number): string {
  const unit = unitFor(bytes);
  return unit === 0 ? `${Math.round(bytes)} B` : `${scaled(bytes, unit)} ${UNITS[unit]}`;
}

/**
 * Returns a progress callback that renders byte downloads to `stream` (default `process.stderr`, so
 * that stdout stays free for the command's result): `\r` redraws at most ~10 times a second on a TTY,
 * else one plain line per file per 10%. Prints file names and numbers only, never the URL or token.
 */
export function createDownloadProgress(
  stream: ProgressStream = process.stderr,
  options: DownloadProgressOptions = {},
): (event: DownloadProgressEvent) => void {
  const now = options.now ?? Date.now;
  const tty = stream.isTTY === true;
  let state:
    | {
        file: string;
        startedAt: number;
        startBytes: number;
        lastBytes: number;
        lastDrawAt: number;
        lastStep: number;
        lineLength: number;
        done: boolean;
      }
    | undefined;

  return (event) => {
    const at = now();
    // A new file, or the same file starting over (a server that ignored a range request).
    if (!state || state.file !== event.file || event.receivedBytes < state.lastBytes) {
      if (tty && state && !state.done && state.lineLength > 0) stream.write('\n');
      state = {
        file: event.file,
        startedAt: at,
        startBytes: event.receivedBytes,
        lastBytes: event.receivedBytes,
        lastDrawAt: Number.NEGATIVE_INFINITY,
        lastStep: -1,
        lineLength: 0,
        done: false,
      };
    }
    if (state.done) return;
    state.lastBytes = event.receivedBytes;
    const total = event.totalBytes;
    const done = total !== undefined && event.receivedBytes >= total;
    const seconds = (at - state.startedAt) / 1000;
    const rate = seconds > 0 ? (event.receivedBytes - state.startBytes) / seconds : undefined;

    if (tty) {
      if (!done && at - state.lastDrawAt < REDRAW_INTERVAL_MS) return;
      state.lastDrawAt = at;
      const line = describe(event, rate, true);
      // Pad over the previous line's tail, which would otherwise linger when the line gets shorter.
      stream.write(`\r${line.padEnd(state.lineLength)}${done ? '\n' : ''}`);
      state.lineLength = line.length;
    } else {
      const step =
        total === undefined
          ? Math.floor(event.receivedBytes / UNKNOWN_SIZE_STEP)
          : Math.floor(fraction(event.receivedBytes, total) * 10);
      if (step <= state.lastStep) return;
      state.lastStep = step;
      stream.write(`${describe(event, rate, false)}\n`);
    }
    state.done = done;
  };
}

function describe(event: DownloadProgressEvent, rate: number | undefined, withBar: boolean): string {
  const total = event.totalBytes;
  const parts = [event.file];
  if (total === undefined) {
    parts.push(formatBytes(event.receivedBytes));
  } else {
    const share = fraction(event.receivedBytes, total);
    if (withBar) {
      const filled = Math.round(share * BAR_WIDTH);
      parts.push(`[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}]`);
    }
    // On a terminal the percentage keeps its width so that the numbers after it do not jitter.
    parts.push(`${String(Math.floor(share * 100)).padStart(withBar ? 3 : 0)}%`);
    const unit = unitFor(total);
    parts.push(
      unit === 0
        ? `${event.receivedBytes}/${total} B`
        : `${scaled(event.receivedBytes, unit)}/${scaled(total, unit)} ${UNITS[unit]}`,
    );
  }
  if (rate !== undefined && rate > 0) {
    parts.push(`${formatBytes(rate)}/s`);
    if (total !== undefined && event.receivedBytes < total) {
      parts.push(`ETA ${formatDuration((total - event.receivedBytes) / rate)}`);
    }
  }
  return parts.join('  ');
}

function fraction(received: number, total: number): number {
  return total > 0 ? Math.min(1, received / total) : 1;
}

function unitFor(bytes: number): number {
  let unit = 0;
  // 999.96 kB would print as "1000.0 kB": switch units where the rounded value reaches 1000.
  while (unit < UNITS.length - 1 && bytes / 1000 ** unit >= 999.95) unit++;
  return unit;
}

function scaled(bytes: number, unit: number): string {
  return (bytes / 1000 ** unit).toFixed(1);
}

function formatDuration(totalSeconds: number): string {
  const s = Math.ceil(totalSeconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
