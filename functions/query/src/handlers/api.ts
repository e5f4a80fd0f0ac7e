/**
 * The query API Lambda (API Gateway HTTP API, payload format 2.0). The caller's identity comes from
 * the request context, put there by the API's authorizer: an IAM principal (SigV4) or JWT claims.
 * A request with neither is refused (401), even if the route was left without an authorizer.
 * The model and the index load once per container, on the first request, and stay in memory.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2 } from 'aws-lambda';
import { readQueryConfig } from '../config.ts';
import { openQueryService } from '../open.ts';
import { createRouter, type Router } from '../router.ts';
import type { Identity, QueryService } from '../service.ts';

/** The parts of an HTTP API v2 event the handler reads (the IAM and JWT authorizer variants). */
export type ApiEvent = APIGatewayProxyEventV2 & {
  readonly requestContext: APIGatewayProxyEventV2['requestContext'] & {
    readonly authorizer?: {
      readonly iam?: {
        readonly userArn?: string;
        readonly callerId?: string;
        readonly principalOrgId?: string;
      };
      readonly jwt?: { readonly claims?: Record<string, string | number | boolean | string[]> };
    };
  };
};

/** The caller of an event, or undefined when the request context names none. */
export function identityOf(event: ApiEvent): Identity | undefined {
  const auth = event.requestContext?.authorizer;
  const arn = auth?.iam?.userArn ?? auth?.iam?.callerId;
  if (typeof arn === 'string' && arn.length > 0) return { id: arn, kind: 'iam' };
  const claims = auth?.jwt?.claims;
  const sub = claims?.['sub'];
  if (typeof sub === 'string' && sub.length > 0) {
    const iss = claims?.['iss'];
    return { id: typeof iss === 'string' ? `${iss}#${sub}` : sub, kind: 'jwt' };
  }
  return undefined;
}

/**
 * Creates a handler over a router (tests pass one over a local service). With `metrics`, each
 * request adds `Requests`, `ClientErrors` (4xx), `ServerErrors` (5xx) and `LatencyMs`, published as
 * CloudWatch embedded metrics when it ends: counts and times only, never query or note text.
 */
export function createApiHandler(router: Router, metrics?: Metrics) {
  return async (event: ApiEvent): Promise<APIGatewayProxyResultV2> => {
    const started = performance.now();
    const result = await route(router, event);
    if (metrics) {
      const status = Number(result.statusCode);
      metrics.addMetric('Requests', MetricUnit.Count, 1);
      metrics.addMetric('ClientErrors', MetricUnit.Count, status >= 400 && status < 500 ? 1 : 0);
      metrics.addMetric('ServerErrors', MetricUnit.Count, status >= 500 ? 1 : 0);
      metrics.addMetric('LatencyMs', MetricUnit.Milliseconds, performance.now() - started);
      metrics.publishStoredMetrics();
    }
    return result;
  };
}

/** Turns an HTTP API v2 event into a router request and the router's answer into the Lambda result. */
async function route(
  router: Router,
  event: ApiEvent,
): Promise<{ statusCode: number; headers: Record<string, string>; body: string; isBase64Encoded: false }> {
  const headers: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(event.headers ?? {})) headers[k.toLowerCase()] = v;
  const body =
    event.body === undefined || event.body === null
      ? undefined
      : event.isBase64Encoded
        ? Buffer.from(event.body, 'base64').toString('utf8')
        : event.body;
  const identity = identityOf(event);
  // A named stage (not `$default`) prefixes the raw path with itself: route on what follows.
  const stage = event.requestContext?.stage;
  let path = event.rawPath ?? event.requestContext?.http?.path ?? '/';
  if (stage && stage !== '$default' && path.startsWith(`/${stage}/`)) path = path.slice(stage.length + 1);
  const r = await router({
    method: (event.requestContext?.http?.method ?? 'GET').toUpperCase(),
    path,
    headers,
    ...(body === undefined ? {} : { body }),
    ...(identity ? { identity } : {}),
  });
  return { statusCode: r.status, headers: r.headers, body: r.body, isBase64Encoded: false };
}

const logger = new Logger({ serviceName: 'cohort-query' });
const log = {
  debug: (m: string, ...extra: Record<string, unknown>[]) => logger.debug(m, ...extra),
  info: (m: string, ...extra: Record<string, unknown>[]) => logger.info(m, ...extra),
  warn: (m: string, ...extra: Record<string, unknown>[]) => logger.warn(m, ...extra),
};

/** The container's service, opened from the environment on first use (see `config.ts`). */
function openFromEnv(): Promise<QueryService> {
  const config = readQueryConfig(process.env, 'api');
  return openQueryService({
    modelDir: config.modelDir!,
    indexUri: config.indexUri,
    audit: config.auditUri!,
    cacheDir: config.cacheDir,
    shards:
      config.shardFunctions.length > 0
        ? { kind: 'lambda', functions: config.shardFunctions }
        : { kind: 'none' },
    refreshIntervalMs: config.refreshIntervalMs,
    maxInFlight: config.maxInFlight,
    ...(config.modelThreads === undefined ? {} : { threads: config.modelThreads }),
    logger: log,
  });
}

/** The Lambda entry point. */
export const handler = createApiHandler(
  createRouter({ service: openFromEnv, logger: log }),
  new Metrics({ namespace: 'CohortSearch', serviceName: 'cohort-query' }),
);
