/** Types of `hnswlib-simd.mjs` (plain JavaScript, so that the postinstall runs without tsx). */

/** The `-march` the addon is built for. */
export declare const SIMD_MARCH: string;
/** /proc/cpuinfo flags that x86-64-v3 needs (`abm` is how Linux names LZCNT). */
export declare const X86_64_V3_FLAGS: readonly string[];
/** File beside the addon that records the build. */
export declare const SIMD_MARKER: string;

/** What {@link planHnswlibBuild} decides from. */
export interface BuildMachine {
  readonly platform: string;
  readonly arch: string;
  readonly env: Record<string, string | undefined>;
  /** The text of /proc/cpuinfo (Linux), else undefined. */
  readonly cpuinfo: string | undefined;
  /** The marker file's text beside the installed addon, if any. */
  readonly marker: string | undefined;
}

/** Whether to rebuild hnswlib-node for x86-64-v3, and why (or why not). */
export declare function planHnswlibBuild(machine: BuildMachine): { build: boolean; reason: string };

/** Rebuilds the addon of the hnswlib-node package in `packageDir` when the plan says so. */
export declare function rebuildHnswlib(
  packageDir: string,
  env?: Record<string, string | undefined>,
): { built: boolean; reason: string };
