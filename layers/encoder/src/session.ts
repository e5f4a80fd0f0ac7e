import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { BundleError, ProviderUnavailableError } from './errors.ts';
import type { EncoderLogger } from './logger.ts';

// This module is the only one that talks to onnxruntime about execution providers: which exist,
// which to try, and how a failure to start one is reported.

/** Execution providers: `auto` picks the best one available here. */
export type Provider = 'cpu' | 'cuda' | 'webgpu' | 'auto';

/** A provider that actually runs a session. */
export type ResolvedProvider = Exclude<Provider, 'auto'>;

/** When ONNX Runtime's idle intra-op threads spin (see {@link SessionOptions.spinning}). */
export type Spinning = 'always' | 'during-runs' | 'off';

/** ONNX Runtime session config entries of each spinning mode. */
const SPINNING_CONFIG: Record<Spinning, Record<string, Record<string, unknown>> | undefined> = {
  always: undefined,
  'during-runs': { session: { force_spinning_stop: '1', intra_op: { allow_spinning: '1' } } },
  off: { session: { intra_op: { allow_spinning: '0' } } },
};

/**
 * ONNX Runtime's graph optimization level for the bundle's graphs on a provider: `basic` on the
 * CPU, `all` on a GPU. The graphs come fused already (onnx/bert.ts); on the CPU the extended level
 * adds little but SkipLayerNormFusion, which turns each residual Add + LayerNormalization into
 * SkipLayerNormalization, whose CPU kernel in ONNX Runtime 1.30 is about 5× slower (18.3 against
 * 3.6 ms per int8 batch of 9 twenty-token queries, one thread). With `basic` (constant folding and
 * redundant-node elimination only) that batch ran 12% faster, 8 × 128 tokens 17% faster in int8
 * and 5% in fp32, on this project's 2-core machine.
 */
export function graphOptimizationLevel(provider: ResolvedProvider): 'basic' | 'all' {
  return provider === 'cpu' ? 'basic' : 'all';
}

/** Options of {@link createSession}. */
export interface SessionOptions {
  /** Execution provider. Default `auto`: CUDA when its provider library is installed, else WebGPU when a Vulkan loader is present, else CPU. */
  readonly provider?: Provider;
  /** Intra-op threads on the CPU. Default: the number of available cores. */
  readonly threads?: number;
  /**
   * When idle intra-op threads spin (busy-wait) for work instead of sleeping. Default `during-runs`.
   * - `during-runs`: they spin between the operators of a run (no wake-up latency per operator) and
   *   sleep once it ends (`session.force_spinning_stop`), leaving the cores to the caller's other
   *   work between runs. Measured on 2 cores: a lone query embeds about 2 ms faster than with `off`
   *   and the search after it is not slowed; the ingest pipeline keeps 0.97–0.98 of the encoder's
   *   own throughput against 0.89–0.93 with `always` (its parsing no longer competes with spinning
   *   threads);
   * - `always`: ONNX Runtime's own default, also spinning after a run (for back-to-back runs with
   *   nothing else to do);
   * - `off`: they always sleep.
   */
  readonly spinning?: Spinning;
  /** Where to log the provider chosen. */
  readonly logger?: EncoderLogger;
}

/** An open session, the provider it runs on and its intra-op threads. */
export interface OpenSession {
  readonly session: ort.InferenceSession;
  readonly provider: ResolvedProvider;
  /** CPU threads one run uses (`SessionOptions.threads`, default the available cores). */
  readonly threads: number;
}

const require = createRequire(import.meta.url);

/** Directory holding onnxruntime-node's native libraries (where its CUDA provider is installed). */
function nativeDir(): string {
  const pkg = dirname(require.resolve('onnxruntime-node/package.json'));
  return join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
}

/**
 * Whether a provider's native parts are present, checked without starting it (starting a missing
 * provider makes onnxruntime print errors). The CUDA provider is an optional download
 * (`ONNXRUNTIME_NODE_INSTALL=cuda12` at install, which the GPU image sets); WebGPU on Linux needs a
 * Vulkan loader.
 */
export function providerInstalled(provider: ResolvedProvider): boolean {
  const backends = ort.listSupportedBackends().map((b) => b.name);
  if (!backends.includes(provider)) return false;
  if (provider === 'cuda') return existsSync(join(nativeDir(), 'libonnxruntime_providers_cuda.so'));
  if (provider === 'webgpu' && process.platform === 'linux') {
    return [
      '/usr/lib/x86_64-linux-gnu/libvulkan.so.1',
      '/usr/lib/aarch64-linux-gnu/libvulkan.so.1',
      '/usr/lib64/libvulkan.so.1',
      '/usr/lib/libvulkan.so.1',
    ].some(existsSync);
  }
  return true;
}

/**
 * Opens an ONNX Runtime session on the provider asked for. A provider asked for by name that is
 * missing or fails to start is an error ({@link ProviderUnavailableError}), never a silent CPU
 * fallback; `auto` tries the candidates in order and logs which one it took. A model that the
 * CPU provider cannot load is a {@link BundleError}: the CPU provider is always there.
 * @param model a model file or image, or a function choosing the model file for a provider (so that
 *   a GPU can be given another variant than the CPU)
 */
export async function createSession(
  model: string | Uint8Array | ((provider: ResolvedProvider) => string),
  options: SessionOptions = {},
): Promise<OpenSession> {
  const asked = options.provider ?? 'auto';
  const threads = options.threads ?? availableParallelism();
  const candidates: ResolvedProvider[] = asked === 'auto' ? ['cuda', 'webgpu', 'cpu'] : [asked];
  const skipped: string[] = [];
  const spinning = options.spinning ?? 'during-runs';
  if (!Object.hasOwn(SPINNING_CONFIG, spinning)) {
    throw new RangeError(
      `spinning must be 'always', 'during-runs' or 'off', got ${JSON.stringify(spinning)}`,
    );
  }
  const spinningConfig = SPINNING_CONFIG[spinning];
  for (const provider of candidates) {
    if (provider !== 'cpu' && !providerInstalled(provider)) {
      if (asked !== 'auto') throw new ProviderUnavailableError(missingMessage(provider));
      skipped.push(`${provider}: not installed`);
      continue;
    }
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: [provider],
      graphOptimizationLevel: graphOptimizationLevel(provider),
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      // Warnings about nodes placed on the CPU by a GPU provider are expected (shape ops); keep errors.
      logSeverityLevel: 3,
      ...(spinningConfig ? { extra: spinningConfig } : {}),
    };
    const source = typeof model === 'function' ? model(provider) : model;
    try {
      const session =
        typeof source === 'string'
          ? await ort.InferenceSession.create(source, sessionOptions)
          : await ort.InferenceSession.create(source, sessionOptions);
      if (asked === 'auto') options.logger?.info('execution provider chosen', { provider, skipped, threads });
      return { session, provider, threads };
    } catch (cause) {
      // The CPU provider always exists, so a CPU failure is the model's fault, not the provider's.
      if (provider === 'cpu') {
        const name = typeof source === 'string' ? source : 'the model';
        throw new BundleError(`${name} cannot be loaded by ONNX Runtime: ${(cause as Error).message}`, {
          cause,
        });
      }
      if (asked !== 'auto') {
        throw new ProviderUnavailableError(
          `the ${provider} execution provider could not start: ${(cause as Error).message}`,
          { cause },
        );
      }
      skipped.push(`${provider}: ${(cause as Error).message.split('\n')[0]}`);
    }
  }
  throw new ProviderUnavailableError(`no execution provider could start (${skipped.join('; ')})`);
}

function missingMessage(provider: ResolvedProvider): string {
  if (provider === 'cuda') {
    return 'the cuda execution provider is not installed: install with ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci on a machine with CUDA 12 (the GPU image does), or use --provider cpu';
  }
  return `the ${provider} execution provider is not available on this machine (it needs a GPU adapter; on Linux a Vulkan loader, libvulkan.so.1); use --provider cpu or auto`;
}
