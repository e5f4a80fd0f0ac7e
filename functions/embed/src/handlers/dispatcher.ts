/**
 * The dispatcher Lambda: SQS event source (with ReportBatchItemFailures) carrying EventBridge S3
 * "Object Created" and "Object Deleted" events. Thin: reads its configuration once, then hands each
 * batch to {@link Dispatcher}.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { openStore } from '@cohort/index';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { dispatcherConfigFromEnv } from '../config.ts';
import { Dispatcher } from '../dispatcher.ts';
import { BatchJobSubmitter, type JobSubmitter } from '../submitter.ts';

/** What {@link createHandler} may be given instead of its defaults. */
export interface HandlerDependencies {
  /** Environment to read. Default `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  /** Job submitter. Default: AWS Batch with JOB_QUEUE and JOB_DEFINITION. */
  readonly submitter?: JobSubmitter;
  /** Options of the index store (e.g. an S3 endpoint). Default: from the environment. */
  readonly storeOptions?: Parameters<typeof openStore>[1];
  /**
   * Where each batch's counts go as CloudWatch embedded metrics (`JobsSubmitted`, `ObjectsDeleted`,
   * `EventsIgnored`, `DuplicateEvents`, `FailedMessages`). Default: namespace `CohortSearch`,
   * service `cohort-embed-dispatcher`.
   */
  readonly metrics?: Metrics;
}

/**
 * Builds the Lambda handler; configuration is read on the first call and kept for the container's
 * life. @throws EmbedConfigError (on the first call) naming missing or invalid variables
 */
export function createHandler(
  deps: HandlerDependencies = {},
): (event: SQSEvent) => Promise<SQSBatchResponse> {
  const logger = new Logger({ serviceName: 'cohort-embed-dispatcher' });
  const metrics =
    deps.metrics ?? new Metrics({ namespace: 'CohortSearch', serviceName: 'cohort-embed-dispatcher' });
  let dispatcher: Dispatcher | undefined;
  const get = (): Dispatcher => {
    if (dispatcher) return dispatcher;
    const config = dispatcherConfigFromEnv(deps.env ?? process.env);
    const store = openStore(
      config.indexUri,
      deps.storeOptions ?? {
        s3: config.kmsKeyId ? { serverSideEncryption: 'aws:kms', sseKmsKeyId: config.kmsKeyId } : {},
      },
    );
    dispatcher = new Dispatcher({
      store,
      indexUri: config.indexUri,
      notesBucket: config.notesBucket,
      notesPrefix: config.notesPrefix,
      limits: config.limits,
      submitter:
        deps.submitter ??
        new BatchJobSubmitter({ jobQueue: config.jobQueue, jobDefinition: config.jobDefinition }),
      logger,
    });
    return dispatcher;
  };
  return async (event) => {
    const result = await get().handle(event.Records.map((r) => ({ messageId: r.messageId, body: r.body })));
    metrics.addMetric('JobsSubmitted', MetricUnit.Count, result.jobs.length);
    metrics.addMetric('ObjectsDeleted', MetricUnit.Count, result.deleted);
    metrics.addMetric('EventsIgnored', MetricUnit.Count, result.ignored);
    metrics.addMetric('DuplicateEvents', MetricUnit.Count, result.duplicates);
    metrics.addMetric('FailedMessages', MetricUnit.Count, result.batchItemFailures.length);
    metrics.publishStoredMetrics();
    return { batchItemFailures: result.batchItemFailures };
  };
}

/** Lambda entry point: returns the messages to redeliver. */
export const handler = createHandler();
