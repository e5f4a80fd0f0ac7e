/**
 * Submitting batch jobs: a small interface, so that the dispatcher can be tested without AWS Batch
 * (the one boundary tests replace), and its AWS Batch implementation.
 */
import { BatchClient, SubmitJobCommand } from '@aws-sdk/client-batch';
import { JOB_ENV } from './config.ts';
import { JobSubmitError } from './errors.ts';

/** One job to submit. */
export interface JobSubmission {
  /** The job spec's id (also the Batch job's name, prefixed `embed-`). */
  readonly jobId: string;
  /** URI of the job spec, passed to the container as `JOB_SPEC_URI`. */
  readonly specUri: string;
}

/** Submits embed jobs. */
export interface JobSubmitter {
  /**
   * Submits one job; returns the scheduler's id for it.
   * @throws JobSubmitError when the submission fails
   */
  submit(job: JobSubmission): Promise<{ readonly submittedId: string }>;
}

/** Options of {@link BatchJobSubmitter}. */
export interface BatchJobSubmitterOptions {
  /** Job queue name or ARN. */
  readonly jobQueue: string;
  /** Job definition (name, name:revision or ARN). */
  readonly jobDefinition: string;
  /** Client. Default: a `BatchClient` for the Lambda's region. */
  readonly client?: BatchClient;
}

/** Submits jobs to AWS Batch, naming the spec in the container's environment. */
export class BatchJobSubmitter implements JobSubmitter {
  private readonly client: BatchClient;

  /** @param options see {@link BatchJobSubmitterOptions} */
  constructor(private readonly options: BatchJobSubmitterOptions) {
    this.client = options.client ?? new BatchClient({});
  }

  async submit(job: JobSubmission): Promise<{ readonly submittedId: string }> {
    try {
      const out = await this.client.send(
        new SubmitJobCommand({
          jobName: `embed-${job.jobId}`,
          jobQueue: this.options.jobQueue,
          jobDefinition: this.options.jobDefinition,
          containerOverrides: { environment: [{ name: JOB_ENV.jobSpec, value: job.specUri }] },
        }),
      );
      if (!out.jobId) throw new Error('SubmitJob returned no job id');
      return { submittedId: out.jobId };
    } catch (cause) {
      throw new JobSubmitError(`cannot submit embed job ${job.jobId}`, { cause });
    }
  }
}
