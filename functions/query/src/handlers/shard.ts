/**
 * A shard function: holds shard SHARD_INDEX of SHARD_COUNT of the index's segments (see
 * `shards.ts`) in memory and answers the API function's search, status and refresh requests
 * (invoked directly, not through API Gateway). The segments load once per container, and each
 * container re-checks the manifest at most every REFRESH_INTERVAL_MS before a search or status.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { readQueryConfig } from '../config.ts';
import {
  answerShardRequest,
  type ChunkSearcher,
  type ShardRequest,
  type ShardResponse,
} from '../searcher.ts';
import { openShardSearcher } from '../shards.ts';

const logger = new Logger({ serviceName: 'cohort-query-shard' });
let searcher: Promise<ChunkSearcher> | undefined;
let refreshIntervalMs = 5000;

/** Options of {@link createShardHandler}. */
export interface ShardHandlerOptions {
  /**
   * Least time between two manifest checks of this container, in ms (or a function giving it, read
   * at each request). Default 5000.
   */
  readonly refreshIntervalMs?: number | (() => number);
  /** Clock, for tests. Default `Date.now`. */
  readonly now?: () => number;
}

/** Creates a shard handler over a searcher factory (tests pass a local one). */
export function createShardHandler(open: () => Promise<ChunkSearcher>, options: ShardHandlerOptions = {}) {
  const now = options.now ?? Date.now;
  const interval = () => {
    const ms = options.refreshIntervalMs ?? 5000;
    return typeof ms === 'function' ? ms() : ms;
  };
  let opened: Promise<ChunkSearcher> | undefined;
  let checkedAt = Number.NEGATIVE_INFINITY;
  return async (event: ShardRequest): Promise<ShardResponse> => {
    opened ??= open().then(
      (s) => {
        checkedAt = now();
        return s;
      },
      (error: unknown) => {
        opened = undefined;
        throw error;
      },
    );
    try {
      const s = await opened;
      // The API's refresh request reaches one warm container of this function, not every one: each
      // container checks the manifest itself, or it would keep serving an old one (deleted notes too).
      if (event?.action === 'refresh') checkedAt = now();
      else if (now() - checkedAt >= interval()) {
        checkedAt = now();
        try {
          await s.refresh();
        } catch (error) {
          logger.warn('manifest check failed; serving the loaded index', { error: (error as Error).name });
        }
      }
      return await answerShardRequest(s, event);
    } catch (error) {
      // Ids and kinds only: a shard never sees query text, and index errors name keys, not notes.
      logger.warn('shard request failed', { error: (error as Error).name });
      return { action: 'error', code: (error as Error).name, message: (error as Error).message };
    }
  };
}

/** The Lambda entry point. */
export const handler = createShardHandler(
  () => {
    searcher ??= (async () => {
      const config = readQueryConfig(process.env, 'shard');
      refreshIntervalMs = config.refreshIntervalMs;
      return openShardSearcher({
        indexUri: config.indexUri,
        shard: config.shardIndex,
        count: config.shardCount,
        cacheDir: config.cacheDir,
      });
    })();
    return searcher;
  },
  { refreshIntervalMs: () => refreshIntervalMs },
);
