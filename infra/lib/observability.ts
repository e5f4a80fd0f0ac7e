import { Duration } from 'aws-cdk-lib';
import type * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** Properties of {@link Observability}. */
export interface ObservabilityProps {
  /** Key of the alarm topic. */
  readonly key: kms.IKey;
  readonly deadLetterQueue: sqs.IQueue;
  readonly eventQueue: sqs.IQueue;
  readonly dispatcher: lambda.IFunction;
  readonly queryFunction: lambda.IFunction;
  readonly shardFunctions: readonly lambda.IFunction[];
  readonly api: apigw.IHttpApi;
  /** Rule matching failed Batch jobs. */
  readonly failedJobsRule: events.Rule;
  /** p99 query latency (ms) above which the latency alarm fires. Default 3000. */
  readonly p99LatencyMs?: number;
  /** Email to subscribe to the alarm topic. Default none. */
  readonly alarmEmail?: string;
}

/**
 * Alarms to an encrypted SNS topic (dead letters, failed jobs, query errors, p99 latency, throttles) and a
 * dashboard of the pipeline and the API. Failed jobs are also sent to the topic as they happen, with the
 * job's id, name and status reason only.
 */
export class Observability extends Construct {
  public readonly topic: sns.Topic;
  public readonly dashboard: cloudwatch.Dashboard;
  public readonly alarms: readonly cloudwatch.Alarm[];

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    this.topic = new sns.Topic(this, 'Alarms', { masterKey: props.key, enforceSSL: true });
    if (props.alarmEmail) this.topic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));

    props.failedJobsRule.addTarget(
      new targets.SnsTopic(this.topic, {
        message: events.RuleTargetInput.fromObject({
          alarm: 'embed job failed',
          jobId: events.EventField.fromPath('$.detail.jobId'),
          jobName: events.EventField.fromPath('$.detail.jobName'),
          statusReason: events.EventField.fromPath('$.detail.statusReason'),
        }),
      }),
    );

    const five = Duration.minutes(5);
    const failedJobs = new cloudwatch.Metric({
      namespace: 'AWS/Events',
      metricName: 'TriggeredRules',
      dimensionsMap: { RuleName: props.failedJobsRule.ruleName },
      statistic: 'Sum',
      period: five,
    });
    const dlq = props.deadLetterQueue.metricApproximateNumberOfMessagesVisible({
      period: five,
      statistic: 'Max',
    });
    const backlogAge = props.eventQueue.metricApproximateAgeOfOldestMessage({
      period: five,
      statistic: 'Max',
    });
    const queryErrors = props.queryFunction.metricErrors({ period: five, statistic: 'Sum' });
    const apiMetric = (metricName: string, statistic: string) =>
      new cloudwatch.Metric({
        namespace: 'AWS/ApiGateway',
        metricName,
        dimensionsMap: { ApiId: props.api.apiId, Stage: '$default' },
        statistic,
        period: five,
      });
    const api5xx = apiMetric('5xx', 'Sum');
    const latency = apiMetric('Latency', 'p99');
    const functions = [props.queryFunction, props.dispatcher, ...props.shardFunctions];
    // A metric-math alarm may use at most 10 metrics: one throttle sum per 10 functions.
    const throttleSums: cloudwatch.MathExpression[] = [];
    for (let start = 0; start < functions.length; start += 10) {
      const group = functions.slice(start, start + 10);
      throttleSums.push(
        new cloudwatch.MathExpression({
          // Ids are unique across the sums: the dashboard graphs them together.
          expression: group.map((_, i) => `t${start + i}`).join(' + '),
          usingMetrics: Object.fromEntries(
            group.map((fn, i) => [`t${start + i}`, fn.metricThrottles({ period: five, statistic: 'Sum' })]),
          ),
          period: five,
          label:
            start === 0
              ? 'Lambda throttles'
              : `Lambda throttles (functions ${start + 1}–${start + group.length})`,
        }),
      );
    }
    const alarm = (name: string, metric: cloudwatch.IMetric, threshold: number, description: string) => {
      const a = new cloudwatch.Alarm(this, name, {
        metric,
        threshold,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      });
      a.addAlarmAction(new actions.SnsAction(this.topic));
      return a;
    };
    this.alarms = [
      alarm(
        'DeadLetters',
        dlq,
        1,
        'Note events the dispatcher could not handle are in the dead-letter queue',
      ),
      alarm('FailedJobs', failedJobs, 1, 'An embed or compaction job failed after its last attempt'),
      alarm('QueryErrors', queryErrors, 5, 'The query function failed 5 or more times in 5 minutes'),
      alarm('Api5xx', api5xx, 5, 'The API answered 5xx 5 or more times in 5 minutes'),
      alarm('QueryLatencyP99', latency, props.p99LatencyMs ?? 3000, 'p99 API latency is high'),
      ...throttleSums.map((sum, i) =>
        alarm(
          i === 0 ? 'Throttles' : `Throttles${i + 1}`,
          sum,
          1,
          'A function was throttled (reserved concurrency reached)',
        ),
      ),
      alarm('Backlog', backlogAge, 3600, 'Note events have waited over an hour'),
    ];

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.days(1),
      widgets: [
        [
          new cloudwatch.GraphWidget({
            title: 'Pipeline: events and dead letters',
            left: [props.eventQueue.metricApproximateNumberOfMessagesVisible({ period: five }), dlq],
            right: [backlogAge],
          }),
          new cloudwatch.GraphWidget({
            title: 'Dispatcher',
            left: [
              props.dispatcher.metricInvocations({ period: five }),
              props.dispatcher.metricErrors({ period: five }),
            ],
          }),
          new cloudwatch.GraphWidget({ title: 'Failed jobs', left: [failedJobs] }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'API: requests and errors',
            left: [
              new cloudwatch.Metric({
                namespace: 'AWS/ApiGateway',
                metricName: 'Count',
                dimensionsMap: { ApiId: props.api.apiId, Stage: '$default' },
                statistic: 'Sum',
                period: five,
              }),
              api5xx,
              queryErrors,
            ],
          }),
          new cloudwatch.GraphWidget({
            title: 'API latency (p50, p99)',
            left: [latency.with({ statistic: 'p50' }), latency],
          }),
          new cloudwatch.GraphWidget({ title: 'Throttles', left: throttleSums }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Query function duration (p99) and concurrency',
            left: [props.queryFunction.metricDuration({ period: five, statistic: 'p99' })],
            right: [
              new cloudwatch.Metric({
                namespace: 'AWS/Lambda',
                metricName: 'ConcurrentExecutions',
                dimensionsMap: { FunctionName: props.queryFunction.functionName },
                statistic: 'Max',
                period: five,
              }),
            ],
          }),
        ],
      ],
    });
  }
}
