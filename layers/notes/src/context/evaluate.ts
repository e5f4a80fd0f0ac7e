/**
 * Evaluation on the NegEx test kit (Chapman et al.): 2,376 sentences from 120 discharge summaries,
 * each with one annotated condition, written in upper case inside the sentence.
 */
import { NotesError } from '../errors.ts';
import { classifySpan, locateCondition } from './classify.ts';

/** One row of the NegEx test set. */
export interface NegExRow {
  readonly id: string;
  readonly condition: string;
  readonly sentence: string;
  readonly negated: boolean;
}

/** One row of the ConText version of the test set. Labels as written, lower-cased. */
export interface ContextRow {
  readonly id: string;
  readonly condition: string;
  readonly sentence: string;
  /** `affirmed` | `negated` (the header also names `possible`, which no row uses). */
  readonly negation: string;
  /** `recent` | `historical` | `not particular` (conditional instructions; the header's `hypothetical`). */
  readonly temporality: string;
  /** `patient` | `family member` | `other`. */
  readonly experiencer: string;
}

/** Confusion counts of one binary tag and the figures from them (0 where a ratio has no denominator). */
export interface TagMetrics {
  readonly precision: number;
  readonly recall: number;
  readonly f1: number;
  readonly accuracy: number;
  readonly tp: number;
  readonly fp: number;
  readonly fn: number;
  readonly tn: number;
}

/** Figures on the ConText test set, one binary tag each. */
export interface ContextEvaluation {
  readonly rows: number;
  /** Negated vs affirmed. */
  readonly negated: TagMetrics;
  /** Historical vs recent or not particular; predicted historical when historical and not hypothetical. */
  readonly historical: TagMetrics;
  /** Hypothetical vs the rest; gold is temporality `not particular` (or `hypothetical`) or negation `possible`. */
  readonly hypothetical: TagMetrics;
  /** Another experiencer (family member, other) vs the patient. */
  readonly experiencer: TagMetrics;
}

// The files quote a field as CSV does: "...", with "" for a quote inside.
function unquote(field: string): string {
  return field.length >= 2 && field.startsWith('"') && field.endsWith('"')
    ? field.slice(1, -1).replaceAll('""', '"')
    : field;
}

function rowsOf(tsv: string, columns: number, name: string): { line: number; fields: string[] }[] {
  const rows: { line: number; fields: string[] }[] = [];
  tsv.split(/\r?\n/).forEach((text, i) => {
    if (text.trim() === '') return;
    const fields = text.split('\t');
    if (fields.length !== columns) {
      throw new NotesError(
        `${name} line ${i + 1}: expected ${columns} tab-separated fields, got ${fields.length}`,
      );
    }
    rows.push({ line: i + 1, fields: fields.map(unquote) });
  });
  return rows;
}

/**
 * Parses the NegEx test set (`id TAB condition TAB sentence TAB Affirmed|Negated`, no header,
 * CRLF or LF, CSV-style quoted fields).
 * @throws NotesError on a row that does not have four fields or a known label
 */
export function parseNegExTestSet(tsv: string): NegExRow[] {
  return rowsOf(tsv, 4, 'NegEx test set').map(({ line, fields: [id, condition, sentence, label] }) => {
    if (label !== 'Affirmed' && label !== 'Negated') {
      throw new NotesError(`NegEx test set line ${line}: label must be Affirmed or Negated, got "${label}"`);
    }
    return { id: id!, condition: condition!, sentence: sentence!, negated: label === 'Negated' };
  });
}

/**
 * Parses the ConText test set (`line, condition, sentence, negation, temporality, experiencer`,
 * tab-separated, a header line first).
 * @throws NotesError on a row that does not have six fields
 */
export function parseContextTestSet(tsv: string): ContextRow[] {
  const rows = rowsOf(tsv, 6, 'ConText test set');
  if (rows[0]?.fields[0]?.toLowerCase().startsWith('line')) rows.shift();
  return rows.map(({ fields: [id, condition, sentence, negation, temporality, experiencer] }) => ({
    id: id!,
    condition: condition!,
    sentence: sentence!,
    negation: negation!.trim().toLowerCase(),
    temporality: temporality!.trim().toLowerCase(),
    experiencer: experiencer!.trim().toLowerCase(),
  }));
}

class Confusion {
  tp = 0;
  fp = 0;
  fn = 0;
  tn = 0;

  add(gold: boolean, predicted: boolean): void {
    if (gold && predicted) this.tp++;
    else if (predicted) this.fp++;
    else if (gold) this.fn++;
    else this.tn++;
  }

  metrics(): TagMetrics {
    const { tp, fp, fn, tn } = this;
    const ratio = (a: number, b: number): number => (b === 0 ? 0 : a / b);
    const precision = ratio(tp, tp + fp);
    const recall = ratio(tp, tp + fn);
    return {
      precision,
      recall,
      f1: ratio(2 * precision * recall, precision + recall),
      accuracy: ratio(tp + tn, tp + fp + fn + tn),
      tp,
      fp,
      fn,
      tn,
    };
  }
}

// The annotated occurrence is the upper-cased one; a condition not in its (truncated) sentence
// gets the defaults, as `classifyCondition` gives it.
function classifyRow(row: { sentence: string; condition: string }) {
  const span = locateCondition(row.sentence, row.condition, true);
  if (!span)
    return { negated: false, hypothetical: false, historical: false, experiencer: 'patient' as const };
  return classifySpan(row.sentence, span[0], span[1]);
}

/**
 * Scores negation on the NegEx test set: a condition is predicted Negated when it lies in a negated
 * scope. Possible ("rule out") counts as not negated, as the set labels it Affirmed.
 */
export function evaluateNegEx(rows: readonly NegExRow[]): TagMetrics {
  const negated = new Confusion();
  for (const row of rows) negated.add(row.negated, classifyRow(row).negated);
  return negated.metrics();
}

/** Scores negation, historical, hypothetical and experiencer on the ConText test set. */
export function evaluateContext(rows: readonly ContextRow[]): ContextEvaluation {
  const negated = new Confusion();
  const historical = new Confusion();
  const hypothetical = new Confusion();
  const experiencer = new Confusion();
  for (const row of rows) {
    const got = classifyRow(row);
    negated.add(row.negation === 'negated', got.negated);
    // ConText's temporality is one value, hypothetical before historical ("return if she
    // experiences ..." is hypothetical although "experiences" is a history trigger).
    historical.add(row.temporality === 'historical', got.historical && !got.hypothetical);
    const goldHypothetical =
      row.temporality === 'not particular' ||
      row.temporality === 'hypothetical' ||
      row.negation === 'possible';
    hypothetical.add(goldHypothetical, got.hypothetical);
    experiencer.add(row.experiencer !== 'patient', got.experiencer === 'other');
  }
  return {
    rows: rows.length,
    negated: negated.metrics(),
    historical: historical.metrics(),
    hypothetical: hypothetical.metrics(),
    experiencer: experiencer.metrics(),
  };
}
