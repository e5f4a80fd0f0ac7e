import { readFileSync } from 'node:fs';
import { RuleFileError } from '../errors.ts';
import type { AssertionKind } from '../types.ts';
import { phraseTokens } from './tokens.ts';

/**
 * What a trigger does to the words around it. `near` is a forward trigger whose scope is the next
 * few words only: ConText's ONEW tag ("status post", "s/p", "prior"), which qualifies the
 * procedure or finding right after it, not the rest of the sentence.
 */
export type TriggerRole = 'forward' | 'near' | 'backward' | 'bidirectional' | 'pseudo' | 'terminate';

/** One trigger phrase of one assertion kind, as read from a rule file. */
export interface TriggerRule {
  readonly kind: AssertionKind;
  readonly phrase: string;
  readonly role: TriggerRole;
  /** The rule file it came from (its name in `assets/context/`). */
  readonly source: string;
}

/** The assertion kinds, in the order of their bit fields in {@link CompiledRules}. */
export const KINDS: readonly AssertionKind[] = ['negated', 'hypothetical', 'historical', 'family'];

/** Role bits of one kind; shift left by `ROLE_WIDTH * kind index` for the kind's field. */
export const PRE = 1;
export const POST = 2;
export const PSEUDO = 4;
export const TERM = 8;
export const NEAR = 16;
/** Bits per kind. */
export const ROLE_WIDTH = 5;

const ROLE_BITS: Readonly<Record<TriggerRole, number>> = {
  forward: PRE,
  near: NEAR,
  backward: POST,
  bidirectional: PRE | POST,
  pseudo: PSEUDO,
  terminate: TERM,
};

/** The bits of `role` (PRE, NEAR, POST, PSEUDO, TERM, or several ORed) for `kind`. */
export function roleBit(kind: AssertionKind, role: number): number {
  return role << (ROLE_WIDTH * KINDS.indexOf(kind));
}

/** A node of the token trie: its children by lower-cased token, and the roles of the phrase ending here. */
export interface TrieNode {
  children: Map<string, TrieNode> | undefined;
  /** Role bits of every kind (see {@link roleBit}); 0 when no phrase ends here. */
  roles: number;
}

/** Trigger phrases compiled into one token trie, matched longest first across all kinds. */
export interface CompiledRules {
  readonly root: TrieNode;
  /** Number of distinct phrases. */
  readonly phrases: number;
}

/**
 * Compiles rules into one trie over word tokens. A phrase listed by several files, or with several
 * roles for one kind, carries the union of its roles (forward + backward = bidirectional); a
 * phrase may carry roles of several kinds ("patient" ends hypothetical and family scopes).
 */
export function compileRules(rules: readonly TriggerRule[]): CompiledRules {
  const root: TrieNode = { children: undefined, roles: 0 };
  let phrases = 0;
  for (const rule of rules) {
    const tokens = phraseTokens(rule.phrase);
    if (tokens.length === 0) continue;
    let node = root;
    for (const t of tokens) {
      node.children ??= new Map();
      let next = node.children.get(t);
      if (!next) {
        next = { children: undefined, roles: 0 };
        node.children.set(t, next);
      }
      node = next;
    }
    if (node.roles === 0) phrases++;
    node.roles |= roleBit(rule.kind, ROLE_BITS[rule.role]);
  }
  return { root, phrases };
}

// NegEx tags. PREP/POSP are NegEx's "possible" triggers (rule out, r/o), which are hypothetical
// here; ONEW is ConText's.
const NEGEX_TAGS: Readonly<Record<string, TriggerRole>> = {
  PREN: 'forward',
  POST: 'backward',
  PSEU: 'pseudo',
  CONJ: 'terminate',
  PREP: 'forward',
  POSP: 'backward',
  ONEW: 'near',
};

const TRIGGER_LINE = /^(.*?)\t+\[([A-Z]+)\]\s*$/;

/**
 * Parses a NegEx/ConText trigger list: one `phrase TAB TAB [TAG]` a line (CRLF or LF).
 *
 * @param kind the kind of the list's triggers; PREP/POSP lines are always hypothetical
 * @param source file name, for errors and {@link TriggerRule.source}
 * @throws RuleFileError on a line that is not a trigger or carries an unknown tag
 */
export function parseTriggerList(text: string, kind: AssertionKind, source: string): TriggerRule[] {
  const rules: TriggerRule[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() !== '') rules.push(parseTriggerLine(line, kind, source, i + 1));
  });
  return rules;
}

function parseTriggerLine(line: string, kind: AssertionKind, source: string, lineNo: number): TriggerRule {
  const m = TRIGGER_LINE.exec(line);
  const role = m ? NEGEX_TAGS[m[2]!] : undefined;
  if (!m || !role || m[1]!.trim() === '') {
    throw new RuleFileError(
      `${source} line ${lineNo}: expected "phrase<TAB><TAB>[PREN|POST|PSEU|CONJ|PREP|POSP|ONEW]"`,
    );
  }
  const possible = m[2] === 'PREP' || m[2] === 'POSP';
  return { kind: possible ? 'hypothetical' : kind, phrase: m[1]!.trim(), role, source };
}

/** A phrase of one kind that the additions take out of the lists read before them. */
export interface TriggerDrop {
  readonly kind: AssertionKind;
  readonly phrase: string;
}

/**
 * Parses this project's additions: `kind TAB phrase TAB [TAG]` a line, `#` comments. The tag
 * `[DROP]` takes the phrase of that kind out of the lists read before (see {@link applyDrops}).
 * @throws RuleFileError on a malformed line
 */
export function parseAdditions(text: string, source: string): { rules: TriggerRule[]; drops: TriggerDrop[] } {
  const rules: TriggerRule[] = [];
  const drops: TriggerDrop[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '' || line.startsWith('#')) return;
    const tab = line.indexOf('\t');
    const kind = line.slice(0, tab) as AssertionKind;
    if (tab < 0 || !KINDS.includes(kind)) {
      throw new RuleFileError(
        `${source} line ${i + 1}: expected "kind<TAB>phrase<TAB>[TAG]" with kind ${KINDS.join(' | ')}`,
      );
    }
    const rest = line.slice(tab + 1);
    const drop = /^(.*?)\t+\[DROP\]\s*$/.exec(rest);
    if (drop && drop[1]!.trim() !== '') drops.push({ kind, phrase: drop[1]!.trim() });
    else rules.push(parseTriggerLine(rest, kind, source, i + 1));
  });
  return { rules, drops };
}

/** Rules without the dropped phrases (compared as tokens, so spacing and case do not matter). */
export function applyDrops(rules: readonly TriggerRule[], drops: readonly TriggerDrop[]): TriggerRule[] {
  if (drops.length === 0) return [...rules];
  const key = (kind: AssertionKind, phrase: string): string => `${kind}\t${phraseTokens(phrase).join(' ')}`;
  const dropped = new Set(drops.map((d) => key(d.kind, d.phrase)));
  return rules.filter((r) => !dropped.has(key(r.kind, r.phrase)));
}

const MEDSPACY_KINDS: Readonly<Record<string, AssertionKind>> = {
  NEGATED_EXISTENCE: 'negated',
  POSSIBLE_EXISTENCE: 'hypothetical',
  HYPOTHETICAL: 'hypothetical',
  HISTORICAL: 'historical',
  FAMILY: 'family',
};

const MEDSPACY_DIRECTIONS: Readonly<Record<string, TriggerRole>> = {
  FORWARD: 'forward',
  BACKWARD: 'backward',
  BIDIRECTIONAL: 'bidirectional',
  PSEUDO: 'pseudo',
  TERMINATE: 'terminate',
};

// Most phrases one spaCy token pattern may expand to; the shipped file's largest (the family
// members) expands to 153.
const MAX_EXPANSION = 4096;

/**
 * Parses medspaCy's `context_rules.json`. A rule with a spaCy token `pattern` is expanded into
 * the literal phrases it matches; only `LOWER` (a string or `{IN: [...]}`) and `OP: "?"` occur in
 * the shipped file, and a rule using anything else is skipped, so that a newer file still loads.
 *
 * @throws RuleFileError when the JSON or a rule's category/direction is not understood
 */
export function parseMedspacyContextRules(json: string, source: string): TriggerRule[] {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (cause) {
    throw new RuleFileError(`${source}: not JSON`, { cause });
  }
  const list = (doc as { context_rules?: unknown } | null)?.context_rules;
  if (!Array.isArray(list)) throw new RuleFileError(`${source}: no "context_rules" array`);
  const rules: TriggerRule[] = [];
  list.forEach((entry: unknown, i) => {
    const r = entry as { category?: unknown; direction?: unknown; literal?: unknown; pattern?: unknown };
    const kind = typeof r.category === 'string' ? MEDSPACY_KINDS[r.category] : undefined;
    const role = typeof r.direction === 'string' ? MEDSPACY_DIRECTIONS[r.direction] : undefined;
    if (!kind || !role || typeof r.literal !== 'string') {
      throw new RuleFileError(`${source} rule ${i}: unknown category or direction, or no literal`);
    }
    const phrases = r.pattern == null ? [r.literal] : expandPattern(r.pattern);
    for (const phrase of phrases ?? []) rules.push({ kind, phrase, role, source });
  });
  return rules;
}

// Expands a spaCy token pattern into phrases, or undefined when it uses more than LOWER and OP "?".
function expandPattern(pattern: unknown): string[] | undefined {
  if (!Array.isArray(pattern)) return undefined;
  let phrases: string[] = [''];
  for (const token of pattern as unknown[]) {
    const t = token as { LOWER?: unknown; OP?: unknown };
    if (typeof t !== 'object' || t === null || Object.keys(t).some((k) => k !== 'LOWER' && k !== 'OP'))
      return undefined;
    let values: string[];
    if (typeof t.LOWER === 'string') values = [t.LOWER];
    else if (Array.isArray((t.LOWER as { IN?: unknown } | undefined)?.IN))
      values = (t.LOWER as { IN: unknown[] }).IN.map(String);
    else return undefined;
    if (t.OP !== undefined && t.OP !== '?') return undefined;
    const next: string[] = [];
    for (const p of phrases) {
      if (t.OP === '?') next.push(p);
      for (const v of values) next.push(joinToken(p, v));
    }
    if (next.length > MAX_EXPANSION) return undefined;
    phrases = next;
  }
  return phrases.filter((p) => p !== '');
}

// spaCy splits "doesn't" into "does" + "n't" and "mother's" into "mother" + "'s"; glue them back
// so that the phrase reads as text does.
function joinToken(phrase: string, token: string): string {
  if (phrase === '') return token;
  return token.startsWith("'") || token === "n't" ? phrase + token : `${phrase} ${token}`;
}

/** The rule files shipped in `assets/context/`, each with the kind of its triggers. */
export const RULE_FILES = [
  { file: 'negex_triggers.txt', kind: 'negated' },
  { file: 'context_trigger-neg.txt', kind: 'negated' },
  { file: 'context_hypothetical_triggers.txt', kind: 'hypothetical' },
  { file: 'context_history_triggers.txt', kind: 'historical' },
  { file: 'context_experiencer_triggers.txt', kind: 'family' },
  { file: 'context_rules_en.json', kind: undefined },
  { file: 'cohort_additions.tsv', kind: undefined },
] as const satisfies readonly { file: string; kind: AssertionKind | undefined }[];

/** The shipped rule files' folder. */
export const RULES_DIR = new URL('../../assets/context/', import.meta.url);

/**
 * Reads every shipped rule file (synchronously: this runs once, at module load).
 * @throws RuleFileError when a file is missing or malformed
 */
export function loadShippedRules(dir: URL = RULES_DIR): TriggerRule[] {
  let rules: TriggerRule[] = [];
  for (const { file, kind } of RULE_FILES) {
    let text: string;
    try {
      text = readFileSync(new URL(file, dir), 'utf8');
    } catch (cause) {
      throw new RuleFileError(`cannot read ConText rule file ${file}`, { cause });
    }
    if (file.endsWith('.json')) rules.push(...parseMedspacyContextRules(text, file));
    else if (kind !== undefined) rules.push(...parseTriggerList(text, kind, file));
    else {
      const additions = parseAdditions(text, file);
      rules = [...applyDrops(rules, additions.drops), ...additions.rules];
    }
  }
  return rules;
}
