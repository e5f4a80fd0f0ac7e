/**
 * Bundles one Lambda handler with esbuild (run as a child process by `bundleFunction`, because CDK's local
 * bundling hook is synchronous and esbuild plugins need the async API).
 *
 * Usage: `node --import tsx esbuild-bundle.ts ENTRY OUTDIR REPO_ROOT`
 *
 * The output is one ES module, `index.mjs`, for Node 22 and later. Two rewrites make the workspace sources run
 * from a bundle:
 * - `import.meta.url` in a workspace file becomes that file's URL as if the repository were laid out
 *   under the function root, and each `layers/<name>/assets` directory is copied there, so code that
 *   finds its assets relative to itself (section rules, ConText rules, the fixture vocabulary) keeps
 *   working.
 * - Native packages (onnxruntime-node, tokenizers, hnswlib-node) stay outside the bundle and are loaded
 *   with `require`, which honours `NODE_PATH` and so finds them in the native-dependency layer under
 *   `/opt/nodejs/node_modules`; an ES `import` would not look there.
 */
import { cp, mkdir, readdir, readFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, type Plugin } from 'esbuild';

/** Packages that stay outside the bundle (they ship in the native-dependency layer). */
export const NATIVE_PACKAGES = ['onnxruntime-node', 'tokenizers', 'hnswlib-node'] as const;

function nativeRequire(): Plugin {
  const filter = new RegExp(`^(${NATIVE_PACKAGES.join('|')})(/.*)?$`);
  return {
    name: 'native-require',
    setup(b) {
      b.onResolve({ filter }, (args) =>
        // The shim's own `require` stays a run-time require; every other import goes through the shim.
        args.namespace === 'native-require'
          ? { path: args.path, external: true }
          : { path: args.path, namespace: 'native-require' },
      );
      b.onLoad({ filter: /.*/, namespace: 'native-require' }, (args) => ({
        // CommonJS shim: esbuild converts it for `import` sites; `require` comes from the banner.
        contents: `module.exports = require(${JSON.stringify(args.path)});`,
        loader: 'js',
      }));
    },
  };
}

function importMetaUrl(root: string): Plugin {
  return {
    name: 'import-meta-url',
    setup(b) {
      b.onLoad({ filter: /\.[cm]?[jt]s$/ }, async (args) => {
        if (args.path.includes('/node_modules/')) return undefined;
        const source = await readFile(args.path, 'utf8');
        if (!source.includes('import.meta.url')) return undefined;
        const rel = relative(root, args.path).split('\\').join('/');
        const url = `new URL(${JSON.stringify(rel)}, import.meta.url).href`;
        return {
          contents: source.replaceAll('import.meta.url', url),
          loader: args.path.endsWith('ts') ? 'ts' : 'js',
          resolveDir: resolve(args.path, '..'),
        };
      });
    },
  };
}

/** Bundles `entry` into `outDir/index.mjs` and copies the workspace assets next to it. */
export async function bundle(entry: string, outDir: string, root: string): Promise<void> {
  await mkdir(outDir, { recursive: true });
  const result = await build({
    entryPoints: [entry],
    outfile: join(outDir, 'index.mjs'),
    absWorkingDir: root,
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'esm',
    minify: false,
    sourcemap: false,
    legalComments: 'none',
    logLevel: 'warning',
    mainFields: ['module', 'main'],
    banner: {
      js: "import { createRequire as __cohortCreateRequire } from 'node:module'; const require = __cohortCreateRequire(import.meta.url);",
    },
    plugins: [nativeRequire(), importMetaUrl(root)],
    metafile: true,
  });
  const inputs = Object.keys(result.metafile.inputs);
  const layers = new Set<string>();
  for (const input of inputs) {
    const match = /^layers\/([^/]+)\//.exec(input);
    if (match?.[1]) layers.add(match[1]);
  }
  for (const layer of layers) {
    const assets = join(root, 'layers', layer, 'assets');
    const entries = await readdir(assets).catch(() => undefined);
    if (entries === undefined) continue;
    await cp(assets, join(outDir, 'layers', layer, 'assets'), { recursive: true });
  }
  // No package.json with "type": "module" here: `.mjs` is ESM already, and such a file would turn the
  // index layer's eval'd CommonJS worker (the graph builder) into an ES module, where `require` is undefined.
}

const [entry, outDir, root] = process.argv.slice(2);
const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain && entry !== undefined && outDir !== undefined && root !== undefined) {
  bundle(resolve(entry), resolve(outDir), resolve(root)).catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
