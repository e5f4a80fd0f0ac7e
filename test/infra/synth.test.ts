import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../infra/lib/packaging/index.ts';

interface AssetManifest {
  files: Record<string, { source: { path: string } }>;
  dockerImages: Record<string, { source: { directory: string; dockerFile: string } }>;
}

let out: string;
let run: ReturnType<typeof spawnSync>;
let template: { Resources: Record<string, { Type: string; Properties: Record<string, unknown> }> };
let assets: AssetManifest;

/** The staged directory of the asset a resource's code points at. */
function assetDirOf(logicalId: string, field: 'Code' | 'Content'): string {
  const key = (template.Resources[logicalId]!.Properties[field] as { S3Key: string }).S3Key.replace(
    '.zip',
    '',
  );
  return join(out, assets.files[key]!.source.path);
}

const idOfType = (type: string, prefix: string) =>
  Object.entries(template.Resources).find(([id, r]) => r.Type === type && id.startsWith(prefix))![0];

beforeAll(() => {
  out = mkdtempSync(join(tmpdir(), 'cohort-synth-'));
  // A model bundle as `cohort model import` writes it (tiny stand-in files; only the layout matters here).
  const model = join(out, 'model');
  mkdirSync(model);
  for (const f of ['model.onnx', 'model.int8.onnx', 'vocab.txt']) writeFileSync(join(model, f), f);
  writeFileSync(
    join(model, 'model.json'),
    JSON.stringify({ variants: { fp32: { file: 'model.onnx' }, int8: { file: 'model.int8.onnx' } } }),
  );
  // The app as `npx cdk synth` runs it, with no container engine to be found.
  run = spawnSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'infra/bin/app.ts')], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    env: {
      ...process.env,
      CDK_DOCKER: join(out, 'no-container-engine'),
      CDK_OUTDIR: join(out, 'cdk.out'),
      // cdk-nag is checked in nag.test.ts on the same stack; here it would only add time.
      CDK_CONTEXT_JSON: JSON.stringify({ modelDir: model, queryShards: 1, nag: false }),
    },
  });
  out = join(out, 'cdk.out');
  if (run.status === 0) {
    template = JSON.parse(readFileSync(join(out, 'CohortSearch.template.json'), 'utf8'));
    assets = JSON.parse(readFileSync(join(out, 'CohortSearch.assets.json'), 'utf8'));
  }
}, 180_000);

afterAll(() => rmSync(join(out, '..'), { recursive: true, force: true }));

describe('the CDK app', () => {
  it('synthesizes offline without a container engine', () => {
    expect(run.stderr).not.toMatch(/Error/);
    expect(run.status).toBe(0);
    expect(Object.keys(template.Resources).length).toBeGreaterThan(100);
  });

  it('bundles each handler into its own index.mjs', () => {
    const dirs = ['EmbedDispatcher', 'QueryF672', 'QueryShard0'].map((prefix) =>
      assetDirOf(idOfType('AWS::Lambda::Function', prefix), 'Code'),
    );
    expect(new Set(dirs).size).toBe(3);
    for (const dir of dirs) expect(existsSync(join(dir, 'index.mjs')), dir).toBe(true);
    const api = readFileSync(join(dirs[1]!, 'index.mjs'), 'utf8');
    const shard = readFileSync(join(dirs[2]!, 'index.mjs'), 'utf8');
    expect(api).toContain('functions/query/src/handlers/api.ts');
    expect(shard).toContain('functions/query/src/handlers/shard.ts');
  });

  it('gives every handler a bundle that loads with its layers and nothing else, as in Lambda', () => {
    for (const prefix of ['EmbedDispatcher', 'QueryF672', 'QueryShard0']) {
      const id = idOfType('AWS::Lambda::Function', prefix);
      const layers = (template.Resources[id]!.Properties['Layers'] as { Ref: string }[]).map((l) => l.Ref);
      const native = layers.find((l) => l.startsWith('NativeLayer'));
      expect(native, `${prefix} has the native layer`).toBeDefined();
      const load = spawnSync(
        process.execPath,
        ['-e', "import('./index.mjs').then((m) => console.log(typeof m.handler))"],
        {
          cwd: assetDirOf(id, 'Code'),
          env: {
            PATH: process.env['PATH'],
            NODE_PATH: join(assetDirOf(native!, 'Content'), 'nodejs/node_modules'),
          },
          encoding: 'utf8',
        },
      );
      expect(load.stderr, prefix).toBe('');
      expect(load.stdout.trim(), prefix).toBe('function');
    }
  });

  it('builds the native layer from the installed packages and the model layer from the int8 variant', () => {
    const native = assetDirOf(idOfType('AWS::Lambda::LayerVersion', 'NativeLayer'), 'Content');
    expect(readdirSync(join(native, 'nodejs/node_modules'))).toContain('onnxruntime-node');
    const model = assetDirOf(idOfType('AWS::Lambda::LayerVersion', 'ModelLayer'), 'Content');
    expect(readdirSync(join(model, 'model')).sort()).toEqual(['model.int8.onnx', 'model.json', 'vocab.txt']);
  });

  it('points the embed job at the bundle’s place in the index bucket, checked by its model.json sha256', () => {
    const modelJson = readFileSync(join(out, '..', 'model', 'model.json'));
    const sha256 = createHash('sha256').update(modelJson).digest('hex');
    const job = Object.values(template.Resources).find(
      (r) =>
        r.Type === 'AWS::Batch::JobDefinition' &&
        !('Command' in (r.Properties['ContainerProperties'] as object)),
    )!;
    const env = (job.Properties['ContainerProperties'] as { Environment: { Name: string; Value: unknown }[] })
      .Environment;
    const value = (name: string) => env.find((e) => e.Name === name)?.Value;
    expect(value('MODEL_SHA256')).toBe(sha256);
    expect(JSON.stringify(value('MODEL_URI'))).toContain(`/models/${sha256.slice(0, 16)}/`);
  });

  it('stages the job images’ context with their Dockerfiles and without installed modules', () => {
    const files = Object.values(assets.dockerImages).map((i) => i.source.dockerFile);
    expect(files.sort()).toEqual(['functions/embed/Dockerfile', 'infra/jobs/maintenance.Dockerfile']);
    const image = Object.values(assets.dockerImages)[0];
    const context = join(out, image!.source.directory);
    expect(existsSync(join(context, 'functions/embed/Dockerfile'))).toBe(true);
    expect(existsSync(join(context, 'infra/jobs/maintenance.ts'))).toBe(true);
    expect(existsSync(join(context, 'package-lock.json'))).toBe(true);
    expect(existsSync(join(context, 'node_modules'))).toBe(false);
  });
});
