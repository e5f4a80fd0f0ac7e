/**
 * The router shared by the Lambda handler and the local HTTP server: a plain function from a
 * transport-neutral request to a response, so both paths validate, authorize, answer and fail
 * identically. Every error is a JSON body with a stable code; nothing unexpected leaks (no stack
 * trace, no note or query text): an unknown failure is a bare 500 `internal` logged by name.
 */
import { randomUUID } from 'node:crypto';
import type { EncoderLogger } from '@cohort/encoder';
import type { z } from 'zod';
import {
  type FieldIssue,
  IndexUnavailableError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  QueryError,
  TooManyRequestsError,
  UnauthorizedError,
  UnsupportedMediaTypeError,
  ValidationError,
} from './errors.ts';
import { toCsv, toFhirGroup } from './formats.ts';
import { openApiDocument } from './openapi.ts';
import { LIMITS, SearchRequestSchema } from './schemas.ts';
import type { Identity, QueryService } from './service.ts';

/** A request as the router sees it. */
export interface RouterRequest {
  /** Upper-case HTTP method. */
  readonly method: string;
  /** Path without the query string. */
  readonly path: string;
  /** Header names in lower case. */
  readonly headers: Readonly<Record<string, string | undefined>>;
  /** The raw body (UTF-8), if any. */
  readonly body?: string;
  /** Who is calling; undefined when the transport found no identity (refused on `/v1/*`). */
  readonly identity?: Identity;
}

/** A response as the router gives it. */
export interface RouterResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/** Options of {@link createRouter}. */
export interface RouterOptions {
  /**
   * The service, or a function giving it (the Lambda loads it lazily; a rejection becomes a 503
   * with its reason, and the next request tries again).
   */
  readonly service: QueryService | (() => Promise<QueryService>);
  /** Logs request ids, routes, statuses and timings; never bodies. */
  readonly logger?: EncoderLogger;
}

/** A router: see the module comment. */
export type Router = (request: RouterRequest) => Promise<RouterResponse>;

const ROUTES: Record<string, readonly string[]> = {
  '/v1/search': ['POST'],
  '/v1/health': ['GET'],
  '/openapi.json': ['GET'],
};

const BASE_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
} as const;

function json(status: number, value: unknown, extra: Record<string, string> = {}): RouterResponse {
  return {
    status,
    headers: { ...BASE_HEADERS, 'content-type': 'application/json; charset=utf-8', ...extra },
    body: JSON.stringify(value),
  };
}

/** The JSON error answer of a {@link QueryError}. */
export function errorResponse(error: QueryError, requestId?: string): RouterResponse {
  const extra: Record<string, string> = requestId ? { 'x-request-id': requestId } : {};
  if (error instanceof MethodNotAllowedError) extra['allow'] = error.allow.join(', ');
  if (error instanceof TooManyRequestsError) extra['retry-after'] = String(error.retryAfterSeconds);
  const issues = error instanceof ValidationError && error.issues.length > 0 ? { issues: error.issues } : {};
  return json(error.status, { error: { code: error.code, message: error.message, ...issues } }, extra);
}

/** Field-level issues of a zod error, paths dotted; messages never echo the input. */
function issuesOf(error: z.ZodError): FieldIssue[] {
  return error.issues.slice(0, 20).map((i) => ({
    path: i.path.map(String).join('.'),
    message:
      i.code === 'unrecognized_keys' ? `unknown field(s): ${i.keys.slice(0, 5).join(', ')}` : i.message,
  }));
}

/** Parses and validates a search body. @throws ValidationError, PayloadTooLargeError, UnsupportedMediaTypeError */
export function parseSearchBody(request: RouterRequest) {
  const type = request.headers['content-type'];
  if (type !== undefined && !/^application\/json\s*(;|$)/i.test(type)) throw new UnsupportedMediaTypeError();
  const body = request.body ?? '';
  if (Buffer.byteLength(body, 'utf8') > LIMITS.bodyBytes) throw new PayloadTooLargeError(LIMITS.bodyBytes);
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (cause) {
    throw new ValidationError('the body is not valid JSON', [], { cause });
  }
  const parsed = SearchRequestSchema.safeParse(value);
  if (!parsed.success) throw new ValidationError('the request is invalid', issuesOf(parsed.error));
  return parsed.data;
}

/** Creates the router (see the module comment). */
export function createRouter(options: RouterOptions): Router {
  const logger = options.logger;
  let service: Promise<QueryService> | undefined;
  const getService = async (): Promise<QueryService> => {
    const s = options.service;
    if (typeof s !== 'function') return s;
    service ??= s().catch((error: unknown) => {
      // Try again on the next request: the index may appear, the network may come back.
      service = undefined;
      throw error instanceof QueryError
        ? error
        : new IndexUnavailableError((error as Error).message, { cause: error });
    });
    return service;
  };

  return async (request) => {
    const requestId = randomUUID();
    const t0 = performance.now();
    let response: RouterResponse;
    try {
      response = await route(request, getService);
    } catch (error) {
      if (error instanceof QueryError && error.status < 500) {
        response = errorResponse(error, requestId);
      } else if (error instanceof QueryError) {
        // Messages of the query API's own errors are written to be safe to show (reasons, never
        // note or query text); the cause is named only.
        logger?.warn('request failed', {
          requestId,
          code: error.code,
          reason: error.message,
          cause: (error.cause as Error | undefined)?.name,
        });
        response = errorResponse(error, requestId);
      } else {
        logger?.warn('unexpected error', { requestId, error: (error as Error)?.name ?? typeof error });
        response = json(500, { error: { code: 'internal', message: 'internal error' } });
      }
    }
    response.headers['x-request-id'] = requestId;
    logger?.debug('request', {
      requestId,
      method: request.method.slice(0, 10),
      route: ROUTES[request.path] ? request.path : 'other',
      status: response.status,
      ms: Math.round((performance.now() - t0) * 100) / 100,
    });
    return response;
  };
}

async function route(
  request: RouterRequest,
  getService: () => Promise<QueryService>,
): Promise<RouterResponse> {
  const allowed = ROUTES[request.path];
  if (!allowed) throw new NotFoundError();
  if (!allowed.includes(request.method)) throw new MethodNotAllowedError(allowed);
  if (request.path === '/openapi.json') return json(200, openApiDocument());
  if (!request.identity) throw new UnauthorizedError();
  if (request.path === '/v1/health') {
    let health: Awaited<ReturnType<QueryService['health']>>;
    try {
      health = await (await getService()).health();
    } catch (error) {
      if (!(error instanceof IndexUnavailableError)) throw error;
      return json(503, {
        status: 'unavailable',
        container: 'cold',
        manifestVersion: 0,
        segments: 0,
        chunks: 0,
        model: { fingerprint: null },
        shards: 0,
        reason: error.reason,
      });
    }
    return json(health.status === 'ok' ? 200 : 503, health);
  }
  const search = parseSearchBody(request);
  const result = await (await getService()).search(search, request.identity);
  const cursorHeader: Record<string, string> = result.nextCursor
    ? { 'x-next-cursor': result.nextCursor }
    : {};
  if (search.format === 'csv') {
    return {
      status: 200,
      headers: {
        ...BASE_HEADERS,
        'content-type': 'text/csv; charset=utf-8',
        'content-disposition': 'attachment; filename="cohort.csv"',
        ...cursorHeader,
      },
      body: toCsv(result),
    };
  }
  if (search.format === 'fhir-group') {
    return {
      status: 200,
      headers: { ...BASE_HEADERS, 'content-type': 'application/fhir+json; charset=utf-8', ...cursorHeader },
      body: JSON.stringify(toFhirGroup(result, search)),
    };
  }
  return json(200, result, cursorHeader);
}
