import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { readNotes } from '../../../../layers/notes/src/readers/index.ts';

const HEADER =
  'ROW_ID,SUBJECT_ID,HADM_ID,CHARTDATE,CHARTTIME,STORETIME,CATEGORY,DESCRIPTION,CGID,ISERROR,TEXT\n';
const PARAGRAPH =
  'HISTORY OF PRESENT ILLNESS:\nThe patient is a [**Age over 90 **] year old woman with ""worsening"" dyspnea, ' +
  'orthopnea and leg swelling over 3 days. She denies chest pain, fever or cough.\n\n';

/** A MIMIC-III CSV of about `megabytes` MB, made as it is read, in 64 KiB chunks. */
async function* bigCsv(
  megabytes: number,
  counter: { rows: number },
  sample: () => void,
): AsyncGenerator<Uint8Array> {
  const target = megabytes * 1024 * 1024;
  let produced = 0;
  let pending: string[] = [HEADER];
  let pendingLength = HEADER.length;
  while (produced < target) {
    const id = ++counter.rows;
    const row = `${id},${id % 5000},${100000 + id},2150-01-01,2150-01-01 10:00:00,,"Nursing","Report",,,"${PARAGRAPH.repeat(1 + (id % 9))}"\n`;
    pending.push(row);
    pendingLength += row.length;
    if (pendingLength >= 64 * 1024) {
      const chunk = Buffer.from(pending.join(''), 'utf8');
      produced += chunk.length;
      pending = [];
      pendingLength = 0;
      sample();
      yield chunk;
    }
  }
  if (pending.length > 0) yield Buffer.from(pending.join(''), 'utf8');
}

/** A way to force a full GC, so that memory samples count live objects, not garbage. */
function gcFunction(): () => void {
  if (typeof global.gc === 'function') return global.gc;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

describe('streaming', () => {
  // The input is four times the memory bound: a reader that kept the raw bytes, the texts or the
  // records of the file could not pass. Only memory is asserted; speed is for benchmarks.
  const INPUT_MB = 200;
  const BOUND_MB = 48;

  it(`reads a ${INPUT_MB} MB CSV in under ${BOUND_MB} MB of added memory, every row accounted for`, async () => {
    const gc = gcFunction();
    gc();
    const before = process.memoryUsage();
    let peak = 0;
    let chunks = 0;
    // Every 2 MiB of input: a full GC, then live memory (heap and buffers) above the start.
    const sample = () => {
      if (++chunks % 32 !== 0) return;
      gc();
      const m = process.memoryUsage();
      peak = Math.max(peak, m.heapUsed + m.arrayBuffers - before.heapUsed - before.arrayBuffers);
    };
    const counter = { rows: 0 };
    let notes = 0;
    let quarantined = 0;
    let textBytes = 0;
    for await (const item of readNotes({ body: bigCsv(INPUT_MB, counter, sample), key: 'NOTEEVENTS.csv' })) {
      if (item.kind === 'note') {
        notes++;
        textBytes += item.note.text.length;
      } else quarantined++;
    }
    expect(quarantined).toBe(0);
    expect(notes).toBe(counter.rows);
    expect(textBytes).toBeGreaterThan(0.9 * INPUT_MB * 1024 * 1024);
    expect(peak).toBeLessThan(BOUND_MB * 1024 * 1024);
  }, 30_000);
});
