import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  defaultCacheDir,
  Encoder,
  EncoderError,
  type ImportOptions,
  importCheckpoint,
  loadBundleTokenizer,
  type ModelInfo,
  type Provider,
  pullCheckpoint,
  readBundleInfo,
  VARIANTS,
  type Variant,
  verifyBundle,
  writeRandomBertCheckpoint,
} from '@cohort/encoder';
import { Command, InvalidArgumentError, Option } from 'commander';
import { registerIndexCommands } from './index-commands.ts';
import { registerIngestCommand } from './ingest.ts';
import { createStderrLogger } from './log.ts';
import { registerNotesCommands } from './notes.ts';
import { parsePositiveInt, printJson } from './output.ts';
import { createDownloadProgress } from './progress.ts';
import { registerSearchCommands } from './search.ts';
import { registerStartCommand } from './start.ts';

const program = new Command('cohort')
  .description('Semantic cohort search over clinical notes (ClinicalBERT + HNSW)')
  .option('-v, --verbose', 'log progress and choices to stderr')
  .showHelpAfterError()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

const logger = () => createStderrLogger(program.opts()['verbose'] ? 'debug' : undefined);

function parseVariants(value: string): Variant[] {
  const list = value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
  for (const v of list) {
    if (!(VARIANTS as readonly string[]).includes(v))
      throw new InvalidArgumentError(`unknown variant ${v}; choose from ${VARIANTS.join(', ')}`);
  }
  if (list.length === 0) throw new InvalidArgumentError('name at least one variant');
  return list as Variant[];
}

/** Options shared by `model import` and `model pull`. */
function withImportOptions(command: Command): Command {
  return command
    .option('--variants <list>', 'comma-separated variants to build: fp32, int8, fp16', parseVariants, [
      ...VARIANTS,
    ])
    .addOption(
      new Option('--pooling <mode>', 'pooling of token vectors').choices(['mean', 'cls']).default('mean'),
    )
    .option(
      '--lowercase',
      'lowercase input as Hugging Face AutoTokenizer does on the ClinicalBERT repos (default: cased, as pretrained)',
      false,
    )
    .option(
      '--max-length <tokens>',
      'longest input in tokens, [CLS] and [SEP] included (default 128)',
      parsePositiveInt,
    )
    .option('--force', 'replace an existing bundle at --out', false);
}

function importOptions(opts: Record<string, unknown>, log: ReturnType<typeof logger>): ImportOptions {
  return {
    variants: opts['variants'] as Variant[],
    pooling: opts['pooling'] as 'mean' | 'cls',
    lowercase: Boolean(opts['lowercase']),
    maxLength: opts['maxLength'] as number | undefined,
    overwrite: Boolean(opts['force']),
    onStage: (stage) => log.info('import', { stage }),
  };
}

function summary(info: ModelInfo, bundle: string) {
  return {
    bundle: resolve(bundle),
    fingerprint: info.fingerprint,
    dims: info.dims,
    variants: Object.keys(info.variants),
  };
}

const model = program.command('model').description('get, build and inspect model bundles');

model
  .command('fixture')
  .description(
    'write the tiny random BERT checkpoint (ClinicalBERT architecture and vocabulary, 2 layers, hidden 32) in Hugging Face layout; its rankings are meaningless',
  )
  .requiredOption('--out <dir>', 'directory to write config.json, vocab.txt and model.safetensors into')
  .action(async (opts: { out: string }) => {
    await writeRandomBertCheckpoint(opts.out);
    printJson({ checkpoint: resolve(opts.out), files: ['config.json', 'vocab.txt', 'model.safetensors'] });
  });

withImportOptions(
  model
    .command('import')
    .description(
      'import a Hugging Face BERT checkpoint directory (config.json, vocab.txt, model.safetensors or pytorch_model.bin) into a model bundle',
    )
    .argument('<hf-dir>', 'checkpoint directory')
    .requiredOption('--out <bundle>', 'bundle directory to create'),
).action(async (dir: string, opts: Record<string, unknown>) => {
  const log = logger();
  const info = await importCheckpoint(dir, opts['out'] as string, importOptions(opts, log));
  printJson(summary(info, opts['out'] as string));
});

withImportOptions(
  model
    .command('pull')
    .description(
      'download a BERT checkpoint from the Hugging Face hub (resumable, verified, cached) and import it',
    )
    .argument('<repo-id>', 'e.g. emilyalsentzer/Bio_Discharge_Summary_BERT')
    .option('--revision <rev>', 'branch, tag or commit', 'main')
    .option('--out <bundle>', 'bundle directory to create (default: <cache>/models/<owner>--<name>)'),
).action(async (repoId: string, opts: Record<string, unknown>) => {
  const log = logger();
  const out =
    (opts['out'] as string | undefined) ?? join(defaultCacheDir(), 'models', repoId.replace('/', '--'));
  const wanted = importOptions(opts, log);
  // Decide about the destination before a download that may be 436 MB.
  const existing = await readBundleInfo(out).catch(() => undefined);
  if (!existing && (await readdir(out).catch(() => [])).length > 0) {
    throw new Error(`${out} holds files but no model bundle; choose another --out`);
  }
  const pulled = await pullCheckpoint({
    repoId,
    revision: opts['revision'] as string,
    onProgress: createDownloadProgress(process.stderr),
  });
  if (existing && !wanted.overwrite) {
    if (sameBundle(existing, repoId, pulled.commitSha, wanted)) {
      log.info('bundle already up to date', { bundle: out, commit: pulled.commitSha });
      printJson(summary(existing, out));
      return;
    }
    throw new Error(
      `${out} holds another bundle (${existing.source.repo} at ${existing.source.commit ?? 'an unknown commit'}, or other settings); pass --force to replace it`,
    );
  }
  const info = await importCheckpoint(pulled.dir, out, {
    ...wanted,
    source: { repo: repoId, revision: pulled.revision, commit: pulled.commitSha },
  });
  printJson(summary(info, out));
});

/** Whether a bundle is what `model pull` would build now (same commit and settings). */
function sameBundle(info: ModelInfo, repoId: string, commit: string, wanted: ImportOptions): boolean {
  const variants = new Set(wanted.variants ?? VARIANTS);
  const have = Object.keys(info.variants);
  return (
    info.source.repo === repoId &&
    info.source.commit === commit &&
    info.pooling === (wanted.pooling ?? 'mean') &&
    info.lowercase === (wanted.lowercase ?? false) &&
    (wanted.maxLength === undefined || info.maxLength === wanted.maxLength) &&
    have.length === variants.size &&
    have.every((v) => variants.has(v as Variant))
  );
}

model
  .command('info')
  .description("print a bundle's model.json")
  .argument('<bundle>', 'bundle directory')
  .option('--verify', 'also hash every file and compare with model.json', false)
  .action(async (bundle: string, opts: { verify: boolean }) => {
    const info = opts.verify ? await verifyBundle(bundle) : await readBundleInfo(bundle);
    process.stdout.write(`${JSON.stringify(info, null, 2)}\n`);
  });

program
  .command('tokenize')
  .description(
    'tokenize texts with a bundle\'s tokenizer; one JSON line per text: {"ids","tokens","offsets"} (offsets in JavaScript string indices)',
  )
  .requiredOption('--model <bundle>', 'bundle directory')
  .argument('<text...>', 'texts')
  .action(async (texts: string[], opts: { model: string }) => {
    const tokenizer = await loadBundleTokenizer(opts.model);
    for (const t of await tokenizer.encodeBatch(texts))
      printJson({ ids: t.ids, tokens: t.tokens, offsets: t.offsets });
  });

program
  .command('embed')
  .description('embed texts; one JSON line per text: {"dims","embedding"} (L2-normalized)')
  .requiredOption('--model <bundle>', 'bundle directory')
  .addOption(
    new Option('--variant <variant>', 'model variant (default: int8 on the CPU, fp16 on a GPU)').choices([
      'fp32',
      'int8',
      'fp16',
    ]),
  )
  .addOption(
    new Option('--provider <provider>', 'execution provider')
      .choices(['auto', 'cpu', 'cuda', 'webgpu'])
      .default('auto'),
  )
  .option('--threads <n>', 'CPU threads (default: all cores)', parsePositiveInt)
  .option(
    '--truncate',
    'cut inputs longer than the model maximum instead of failing (reported on stderr)',
    false,
  )
  .argument('<text...>', 'texts')
  .action(
    async (
      texts: string[],
      opts: { model: string; variant?: Variant; provider: Provider; threads?: number; truncate: boolean },
    ) => {
      const log = logger();
      const encoder = await Encoder.load(opts.model, {
        variant: opts.variant,
        provider: opts.provider,
        threads: opts.threads,
        logger: log,
      });
      try {
        const result = await encoder.embed(texts, { onOverflow: opts.truncate ? 'truncate' : 'error' });
        if (result.truncated.length)
          log.warn('inputs truncated to the model maximum', {
            indices: result.truncated,
            maxLength: encoder.info.maxLength,
          });
        for (const e of result.embeddings) printJson({ dims: e.length, embedding: Array.from(e) });
      } finally {
        await encoder.close();
      }
    },
  );

registerNotesCommands(program, logger);
registerIndexCommands(program, logger);
registerIngestCommand(program, logger);
registerSearchCommands(program, logger);
registerStartCommand(program, logger);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  // Layer errors carry messages written for people; a bare system error gets its path spelled out.
  const e = error as NodeJS.ErrnoException;
  const message =
    !(error instanceof EncoderError) && e.code === 'ENOENT'
      ? `no such file or directory: ${e.path}`
      : e.message;
  process.stderr.write(`cohort: ${message}\n`);
  process.exitCode = 1;
}
