/**
 * A shard function: holds shard SHARD_INDEX of SHARD_COUNT of the index's segments (see
 * `shards.ts`) in memory and answers the API function's search, status and refresh requests
 * (invoked directly, not through API Gateway). The segments load once per container.
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

/** Creates a shard handler over a searcher factory (tests pass a local one). */
export function createShardHandler(open: () => Promise<ChunkSearcher>) {
  let opened: Promise<ChunkSearcher> | undefined;
  return async (event: ShardRequest): Promise<ShardResponse> => {
    opened ??= open().catch((error: unknown) => {
      opened = undefined;
      throw error;
    });
    try {
      return await answerShardRequest(await opened, event);
    } catch (error) {
      // Ids and kinds only: a shard never sees query text, and index errors name keys, not notes.
      logger.warn('shard request failed', { error: (error as Error).name });
      return { action: 'error', code: (error as Error).name, message: (error as Error).message };
    }
  };
}

/** The Lambda entry point. */
export const handler = createShardHandler(() => {
  searcher ??= (async () => {
    const config = readQueryConfig(process.env, 'shard');
    return openShardSearcher({
      indexUri: config.indexUri,
      shard: config.shardIndex,
      count: config.shardCount,
      cacheDir: config.cacheDir,
    });
  })();
  return searcher;
});
