import { Duration, RemovalPolicy, Size } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpIamAuthorizer, HttpJwtAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { QUERY_ENV } from '../../functions/query/src/config.ts';
import { AUDIT_PREFIX, type DataBuckets } from './buckets.ts';
import { acknowledgeFunction } from './nag.ts';
import { RUNTIME } from './packaging/index.ts';

/** Handler files of the query functions (relative to the repository root). */
export const API_ENTRY = 'functions/query/src/handlers/api.ts';
export const SHARD_ENTRY = 'functions/query/src/handlers/shard.ts';

/** The routes of the query router (`functions/query/src/router.ts`); each gets the default authorizer. */
export const API_ROUTES: readonly { readonly path: string; readonly method: apigw.HttpMethod }[] = [
  { path: '/v1/search', method: apigw.HttpMethod.POST },
  { path: '/v1/health', method: apigw.HttpMethod.GET },
  { path: '/openapi.json', method: apigw.HttpMethod.GET },
];

/** Where the model layer puts the bundle (`/opt` + the layer's `model/`). */
export const MODEL_MOUNT = '/opt/model';

/** Authorization of the API's routes. */
export type QueryAuth =
  | { readonly mode: 'iam' }
  | { readonly mode: 'jwt'; readonly issuer: string; readonly audience: readonly string[] };

type QueryEnvName = keyof typeof QUERY_ENV;

/** Properties of {@link QueryApi}. */
export interface QueryApiProps {
  readonly buckets: DataBuckets;
  readonly vpc: ec2.IVpc;
  readonly subnets: ec2.SubnetSelection;
  /** Key of the log groups. */
  readonly opsKey: kms.IKey;
  /** Code of the API handler and of the shard handler (`index.handler` each). */
  readonly apiCode: lambda.Code;
  readonly shardCode: lambda.Code;
  /** Layers of the query and shard functions: the native dependencies. */
  readonly layers: readonly lambda.ILayerVersion[];
  /** Layers of the query function only: the model (shards search vectors the query function encoded). */
  readonly queryLayers?: readonly lambda.ILayerVersion[];
  /** Memory of the API function in MB. Default 6144. */
  readonly memoryMb?: number;
  /** /tmp of the API and shard functions in MB (segment cache). Default 10240. */
  readonly ephemeralMb?: number;
  /** Reserved concurrency of the API function (each shard function gets the same). Default 10. */
  readonly reservedConcurrency?: number;
  /** Shard functions (0 = none; the API function holds every segment). Default 0. */
  readonly shards?: number;
  /** Memory of each shard function in MB. Default 10240. */
  readonly shardMemoryMb?: number;
  /** Route authorization. Default IAM (SigV4). */
  readonly auth?: QueryAuth;
  /** Stage throttling. Default 50 requests/s, burst 100. */
  readonly rateLimit?: number;
  readonly burstLimit?: number;
  /** Log retention. Default one year. */
  readonly logRetention?: logs.RetentionDays;
}

/**
 * The query API: an HTTP API whose every route needs IAM (SigV4) or JWT authorization, throttled, with
 * access logs in a KMS-encrypted log group; the query function behind it (int8 model and native
 * dependencies from layers, memory and /tmp sized for its share of the index); and, optionally, shard
 * functions it fans out to. The functions read the index and notes and may write only audit records.
 */
export class QueryApi extends Construct {
  public readonly api: apigw.HttpApi;
  public readonly stage: apigw.HttpStage;
  public readonly queryFunction: lambda.Function;
  public readonly shardFunctions: readonly lambda.Function[];
  public readonly accessLogGroup: logs.LogGroup;
  /** The API's invoke URL. */
  public readonly url: string;

  constructor(scope: Construct, id: string, props: QueryApiProps) {
    super(scope, id);
    const { buckets } = props;
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_YEAR;
    const indexUri = `s3://${buckets.index.bucketName}`;
    const reserved = props.reservedConcurrency ?? 10;
    const ephemeral = Size.mebibytes(props.ephemeralMb ?? 10240);
    const common = (name: string, memoryMb: number, env: Partial<Record<QueryEnvName, string>>) => {
      const fn = new lambda.Function(this, name, {
        runtime: RUNTIME,
        architecture: lambda.Architecture.X86_64,
        handler: 'index.handler',
        code: name === 'Query' ? props.apiCode : props.shardCode,
        layers: [...props.layers, ...(name === 'Query' ? (props.queryLayers ?? []) : [])],
        memorySize: memoryMb,
        ephemeralStorageSize: ephemeral,
        // A cold start loads the model and fetches segments into /tmp; searches themselves take ms.
        timeout: Duration.seconds(29),
        reservedConcurrentExecutions: reserved,
        vpc: props.vpc,
        vpcSubnets: props.subnets,
        tracing: lambda.Tracing.ACTIVE,
        loggingFormat: lambda.LoggingFormat.JSON,
        logGroup: new logs.LogGroup(this, `${name}Logs`, {
          encryptionKey: props.opsKey,
          retention: logRetention,
          removalPolicy: RemovalPolicy.RETAIN,
        }),
        environment: {
          INDEX_URI: indexUri,
          ...env,
          POWERTOOLS_SERVICE_NAME: name === 'Query' ? 'cohort-query' : 'cohort-query-shard',
          POWERTOOLS_METRICS_NAMESPACE: 'CohortSearch',
        },
      });
      acknowledgeFunction(
        fn,
        name === 'Query'
          ? 'API Gateway invokes it synchronously and the caller gets the error'
          : 'the query function invokes it synchronously and handles its errors',
      );
      buckets.grantReadIndex(fn);
      buckets.grantReadNotes(fn);
      return fn;
    };

    const shardCount = props.shards ?? 0;
    const shards: lambda.Function[] = [];
    for (let i = 0; i < shardCount; i++) {
      shards.push(
        common(`Shard${i}`, props.shardMemoryMb ?? 10240, {
          SHARD_INDEX: String(i),
          SHARD_COUNT: String(shardCount),
        }),
      );
    }
    this.shardFunctions = shards;
    this.queryFunction = common('Query', props.memoryMb ?? 6144, {
      // The model layer's bundle; shards load no model.
      MODEL_DIR: MODEL_MOUNT,
      AUDIT_URI: `s3://${buckets.audit.bucketName}/${AUDIT_PREFIX}`,
      ...(shardCount > 0 ? { SHARD_FUNCTIONS: shards.map((s) => s.functionName).join(',') } : {}),
    });
    buckets.grantWriteAudit(this.queryFunction);
    if (shards.length > 0) {
      // The unqualified functions only: the query never calls a version or alias of a shard.
      this.queryFunction.addToRolePolicy(
        new iam.PolicyStatement({
          actions: ['lambda:InvokeFunction'],
          resources: shards.map((f) => f.functionArn),
        }),
      );
    }

    this.api = new apigw.HttpApi(this, 'Api', {
      description: 'Cohort search API',
      createDefaultStage: false,
      disableExecuteApiEndpoint: false,
      defaultAuthorizer: authorizer(props.auth ?? { mode: 'iam' }),
    });
    const integration = new HttpLambdaIntegration('QueryIntegration', this.queryFunction);
    for (const route of API_ROUTES) {
      this.api.addRoutes({ path: route.path, methods: [route.method], integration });
    }
    this.accessLogGroup = new logs.LogGroup(this, 'AccessLogs', {
      encryptionKey: props.opsKey,
      retention: logRetention,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.stage = new apigw.HttpStage(this, 'Stage', {
      httpApi: this.api,
      stageName: '$default',
      autoDeploy: true,
      throttle: { rateLimit: props.rateLimit ?? 50, burstLimit: props.burstLimit ?? 100 },
      accessLogSettings: {
        destination: new apigw.LogGroupLogDestination(this.accessLogGroup),
        // Ids, caller, route, status and timings only: never bodies or query strings.
        format: AccessLogFormat.custom(
          JSON.stringify({
            requestId: '$context.requestId',
            ip: '$context.identity.sourceIp',
            caller: '$context.identity.caller',
            user: '$context.identity.userArn',
            sub: '$context.authorizer.claims.sub',
            routeKey: '$context.routeKey',
            status: '$context.status',
            latency: '$context.responseLatency',
            integrationLatency: '$context.integrationLatency',
            integrationError: '$context.integrationErrorMessage',
            time: '$context.requestTime',
          }),
        ),
      },
    });
    this.url = this.api.apiEndpoint;
  }
}

function authorizer(auth: QueryAuth): apigw.IHttpRouteAuthorizer {
  if (auth.mode === 'iam') return new HttpIamAuthorizer();
  return new HttpJwtAuthorizer('Jwt', auth.issuer, { jwtAudience: [...auth.audience] });
}
