/**
 * How code reaches AWS: handler bundles (esbuild, always on this machine: the output is plain JavaScript),
 * the native-dependency layer (container build when a container engine answers, else a checked copy),
 * the model layer (the int8 variant of a model bundle) and the embed job image (built by `cdk deploy`).
 *
 * With CDK's `aws:cdk:bundling-stacks` context set to `[]` (what the infra tests do) nothing is bundled or
 * built and the handler files need not exist yet; the template is the same apart from asset hashes.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AssetHashType, DockerImage, IgnoreMode } from 'aws-cdk-lib';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import {
  containerBuildCommand,
  containerEngineAvailable,
  measureLayer,
  NativeLayerError,
  stageNativeLayer,
} from './native-layer.ts';

export * from './native-layer.ts';

/** The repository root (infra/lib/packaging → ../../..). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Build image for anything native: the SAM build image is Amazon Linux 2023, as the nodejs24.x runtime. */
export const LAMBDA_BUILD_IMAGE = 'public.ecr.aws/sam/build-nodejs24.x:latest';

/** The Lambda runtime every function uses. */
export const RUNTIME = lambda.Runtime.NODEJS_24_X;

/** Where native layer builds happen: `auto` (container if one answers), `container` or `local`. */
export type NativeBuild = 'auto' | 'container' | 'local';

/** Thrown when a handler cannot be bundled. */
export class BundleError extends Error {
  override readonly name = 'BundleError';
}

/**
 * Code of one Lambda handler (`export const handler` in `entry`, relative to the repository root), bundled
 * by esbuild into `index.mjs` with its workspace assets; the Lambda handler string is `index.handler`.
 */
export function handlerCode(entry: string): lambda.Code {
  const source = join(REPO_ROOT, dirname(entry));
  return lambda.Code.fromAsset(existsSync(source) ? source : join(REPO_ROOT, 'functions'), {
    // The hash is taken from the bundle, so an unchanged bundle is not uploaded again.
    assetHashType: AssetHashType.OUTPUT,
    bundling: {
      image: DockerImage.fromRegistry(LAMBDA_BUILD_IMAGE),
      // CDK caches bundles by source path and the JSON of these options (functions drop out of it):
      // naming the entry here keeps two handlers of one directory from sharing a bundle.
      environment: { COHORT_HANDLER_ENTRY: entry },
      local: {
        tryBundle(outputDir: string): boolean {
          const file = join(REPO_ROOT, entry);
          if (!existsSync(file)) throw new BundleError(`cannot bundle ${entry}: the file does not exist`);
          const script = join(REPO_ROOT, 'infra', 'lib', 'packaging', 'esbuild-bundle.ts');
          const run = spawnSync(process.execPath, ['--import', 'tsx', script, file, outputDir, REPO_ROOT], {
            cwd: REPO_ROOT,
            encoding: 'utf8',
          });
          if (run.status !== 0) {
            throw new BundleError(`esbuild failed for ${entry}: ${run.stderr || run.stdout || run.error}`);
          }
          return true;
        },
      },
    },
  });
}

/** Code of the native-dependency layer; see `native-layer.ts` for the two ways it is built. */
export function nativeLayerCode(build: NativeBuild = 'auto'): lambda.Code {
  const source = join(REPO_ROOT, 'infra', 'layers', 'native');
  const nodeModules = join(REPO_ROOT, 'node_modules');
  return lambda.Code.fromAsset(source, {
    assetHashType: AssetHashType.CUSTOM,
    // The same packages at the same versions make the same layer, whichever way it was built.
    assetHash: sha256(readFileSync(join(source, 'package.json'))),
    bundling: {
      image: DockerImage.fromRegistry(LAMBDA_BUILD_IMAGE),
      command: containerBuildCommand(),
      local: {
        tryBundle(outputDir: string): boolean {
          if (build === 'container') return false;
          if (build === 'auto' && containerEngineAvailable()) return false;
          if (process.platform !== 'linux' || process.arch !== 'x64') {
            throw new NativeLayerError(
              `native layer: no container engine, and this ${process.platform}-${process.arch} machine's packages are not Lambda's linux-x64; start docker (or set CDK_DOCKER)`,
            );
          }
          stageNativeLayer(nodeModules, outputDir);
          return true;
        },
      },
    },
  });
}

/** Files of a model bundle that the query needs: everything but the other variants' weights. */
export function modelFilesFor(bundleDir: string, variant = 'int8'): string[] {
  const info = JSON.parse(readFileSync(join(bundleDir, 'model.json'), 'utf8')) as {
    variants: Record<string, { file: string }>;
    tokenizer?: { vocabFile?: string };
  };
  const chosen = info.variants[variant];
  if (chosen === undefined) {
    throw new BundleError(
      `model bundle ${bundleDir} has no ${variant} variant; re-import it with that variant`,
    );
  }
  const others = new Set(
    Object.entries(info.variants)
      .filter(([name]) => name !== variant)
      .map(([, v]) => v.file),
  );
  return readdirSync(bundleDir).filter((f) => !others.has(f) && statSync(join(bundleDir, f)).isFile());
}

/**
 * Code of the model layer: the bundle's `model.json`, tokenizer files and the `variant` weights under
 * `model/` (so `/opt/model` in the function). The asset hash is the bundle's own checksums, so an unchanged
 * model is neither copied nor uploaded again.
 */
export function modelLayerCode(bundleDir: string, variant = 'int8'): lambda.Code {
  const modelJson = readFileSync(join(bundleDir, 'model.json'));
  return lambda.Code.fromAsset(bundleDir, {
    assetHashType: AssetHashType.CUSTOM,
    assetHash: sha256(Buffer.concat([modelJson, Buffer.from(variant)])),
    bundling: {
      image: DockerImage.fromRegistry(LAMBDA_BUILD_IMAGE),
      local: {
        tryBundle(outputDir: string): boolean {
          const target = join(outputDir, 'model');
          mkdirSync(target, { recursive: true });
          for (const file of modelFilesFor(bundleDir, variant))
            cpSync(join(bundleDir, file), join(target, file));
          return true;
        },
      },
    },
  });
}

/** Unzipped bytes the model layer will hold. */
export function modelLayerBytes(bundleDir: string, variant = 'int8'): number {
  return modelFilesFor(bundleDir, variant).reduce((sum, f) => sum + statSync(join(bundleDir, f)).size, 0);
}

/**
 * What the image build sees: only what `npm ci` and the job need (the root manifests and every workspace
 * named in package.json), never local data, caches, build outputs or installed modules.
 */
export function imageExcludes(root: string = REPO_ROOT): string[] {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { workspaces?: string[] };
  const keep = ['package.json', 'package-lock.json', '.npmrc', 'tsconfig.json', ...(pkg.workspaces ?? [])];
  return [
    '*',
    '.*',
    ...keep.map((path) => `!${path}`),
    '**/node_modules',
    '**/cdk.out',
    '**/.work',
    '**/dist',
  ];
}

/** The embed job image, built from `functions/embed/Dockerfile` with the repository as context. */
export function jobImage(): ecs.ContainerImage {
  return repositoryImage('functions/embed/Dockerfile');
}

/** The maintenance job image (compaction, garbage collection), from `infra/jobs/maintenance.Dockerfile`. */
export function maintenanceImage(): ecs.ContainerImage {
  return repositoryImage('infra/jobs/maintenance.Dockerfile');
}

function repositoryImage(file: string): ecs.ContainerImage {
  return ecs.ContainerImage.fromAsset(REPO_ROOT, {
    file,
    exclude: imageExcludes(),
    ignoreMode: IgnoreMode.DOCKER,
    // Batch hosts are x86_64; an arm64 laptop must still build an amd64 image.
    platform: Platform.LINUX_AMD64,
  });
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export * from './sizes.ts';
export { measureLayer };
