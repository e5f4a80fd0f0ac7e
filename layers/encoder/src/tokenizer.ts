import {
  bertNormalizer,
  bertPreTokenizer,
  bertProcessing,
  type Encoding,
  Tokenizer,
  WordPiece,
} from 'tokenizers';
import { BundleError } from './errors.ts';

/** Settings of {@link BertTokenizer}. */
export interface BertTokenizerOptions {
  /**
   * Lowercase (and strip accents) before WordPiece. Default `false`: ClinicalBERT was pretrained
   * cased. `true` reproduces Hugging Face's AutoTokenizer on the ClinicalBERT repos, which ship no
   * tokenizer_config.json and so fall back to BertTokenizer's `do_lower_case=True`.
   */
  readonly lowercase?: boolean;
}

/** One tokenized text. Offsets are [start, end) in UTF-16 code units of the text (JavaScript string indices); [CLS] and [SEP] have [0, 0]. */
export interface TokenizedText {
  readonly ids: number[];
  readonly tokens: string[];
  readonly offsets: [number, number][];
}

/** Special tokens of the BERT vocabulary, looked up by name. */
const SPECIAL = { cls: '[CLS]', sep: '[SEP]', unk: '[UNK]', pad: '[PAD]' } as const;

/**
 * BERT WordPiece tokenizer from a `vocab.txt`, built on Hugging Face `tokenizers` (the Rust
 * implementation that AutoTokenizer's fast tokenizer uses): BertNormalizer (clean text, split CJK
 * characters, lowercase and strip accents only when `lowercase`), BertPreTokenizer, WordPiece with
 * `##` continuations, [UNK] for words over 100 characters, and `[CLS] text [SEP]`.
 */
export class BertTokenizer {
  private constructor(
    private readonly tokenizer: Tokenizer,
    /** Whether input is lowercased and accents stripped. */
    readonly lowercase: boolean,
    /** Id of [PAD] (0 in BERT vocabularies). */
    readonly padId: number,
  ) {}

  /** Builds the tokenizer from a `vocab.txt` (one token per line, id = line number). */
  static async fromVocab(vocabPath: string, options: BertTokenizerOptions = {}): Promise<BertTokenizer> {
    const lowercase = options.lowercase ?? false;
    const model = await WordPiece.fromFile(vocabPath, {
      unkToken: SPECIAL.unk,
      continuingSubwordPrefix: '##',
      maxInputCharsPerWord: 100,
    });
    const tokenizer = new Tokenizer(model);
    // Hugging Face's strip_accents=None means "follow lowercase"; it is passed explicitly here so the
    // cased setting never strips accents whatever the binding's default.
    tokenizer.setNormalizer(
      bertNormalizer({ cleanText: true, handleChineseChars: true, stripAccents: lowercase, lowercase }),
    );
    tokenizer.setPreTokenizer(bertPreTokenizer());
    const id = (token: string): number => {
      const found = tokenizer.tokenToId(token);
      if (found === null || found === undefined)
        throw new BundleError(`${vocabPath}: the vocabulary has no ${token} token`);
      return found;
    };
    tokenizer.setPostProcessor(
      bertProcessing([SPECIAL.sep, id(SPECIAL.sep)], [SPECIAL.cls, id(SPECIAL.cls)]),
    );
    return new BertTokenizer(tokenizer, lowercase, id(SPECIAL.pad));
  }

  /** Number of tokens in the vocabulary. */
  get vocabSize(): number {
    return this.tokenizer.getVocabSize(false);
  }

  /** Tokenizes one text, with [CLS] and [SEP], without truncation. */
  async encode(text: string): Promise<TokenizedText> {
    return toTokenized(text, await this.tokenizer.encode(text));
  }

  /** Tokenizes many texts (in parallel in the native library), without truncation. */
  async encodeBatch(texts: readonly string[]): Promise<TokenizedText[]> {
    if (texts.length === 0) return [];
    const encodings = await this.tokenizer.encodeBatch([...texts]);
    return encodings.map((e, i) => toTokenized(texts[i]!, e));
  }
}

function toTokenized(text: string, e: Encoding): TokenizedText {
  const offsets = e.getOffsets() as [number, number][];
  return { ids: e.getIds(), tokens: e.getTokens(), offsets: codePointToUtf16Offsets(text, offsets) };
}

/**
 * The native library reports offsets in Unicode code points; JavaScript indexes strings in UTF-16
 * code units. They differ only after a character outside the Basic Multilingual Plane (emoji, some
 * CJK), so the map is built only for texts that contain a surrogate pair.
 */
export function codePointToUtf16Offsets(text: string, offsets: [number, number][]): [number, number][] {
  if (!/[\uD800-\uDBFF]/.test(text)) return offsets;
  const unitIndex: number[] = [];
  let unit = 0;
  for (const ch of text) {
    unitIndex.push(unit);
    unit += ch.length;
  }
  unitIndex.push(unit);
  return offsets.map(([s, e]) => [unitIndex[s] ?? unit, unitIndex[e] ?? unit]);
}
