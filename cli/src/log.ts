import type { EncoderLogger } from '@cohort/encoder';

/**
 * A logger for the command line: one line per message on stderr, so that stdout carries only the
 * command's JSON output. Fields are identifiers and counts; nothing the user typed is logged.
 * `COHORT_LOG_LEVEL=debug|info|warn` (default `info`: choices such as the execution provider and
 * progress stages are shown; `--verbose` sets `debug`).
 */
export function createStderrLogger(level = process.env.COHORT_LOG_LEVEL ?? 'info'): EncoderLogger {
  const rank = { debug: 0, info: 1, warn: 2 } as const;
  const min = rank[level as keyof typeof rank] ?? rank.info;
  const write =
    (name: keyof typeof rank) =>
    (message: string, ...extra: Record<string, unknown>[]) => {
      if (rank[name] < min) return;
      const fields = Object.assign({}, ...extra) as Record<string, unknown>;
      const suffix = Object.keys(fields).length ? ` ${JSON.stringify(fields)}` : '';
      process.stderr.write(`cohort ${name}: ${message}${suffix}\n`);
    };
  return { debug: write('debug'), info: write('info'), warn: write('warn') };
}
