/**
 * A local shard in a worker thread (see `WorkerShardClient`): opens its share of the index once,
 * then answers numbered requests. Failures go back as messages without note or query text.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openStore } from '@cohort/index';
import { answerShardRequest, type ChunkSearcher, type ShardRequest } from './searcher.ts';
import { openShardSearcher, type ShardWorkerData } from './shards.ts';

const data = workerData as ShardWorkerData;
const port = parentPort!;
let searcher: ChunkSearcher;
try {
  searcher = await openShardSearcher({
    ...data,
    ...(data.s3 ? { store: openStore(data.indexUri, { s3: data.s3 }) } : {}),
  });
  port.postMessage({ ready: true });
} catch (error) {
  port.postMessage({ error: (error as Error).message });
  process.exit(1);
}
port.on('message', async (m: { id: number; request: ShardRequest }) => {
  try {
    port.postMessage({ id: m.id, response: await answerShardRequest(searcher, m.request) });
  } catch (error) {
    port.postMessage({
      id: m.id,
      response: { action: 'error', code: (error as Error).name, message: (error as Error).message },
    });
  }
});
