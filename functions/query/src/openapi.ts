/**
 * The OpenAPI 3.1 document of the API, generated from the zod schemas (`z.toJSONSchema`, JSON Schema
 * 2020-12, which OpenAPI 3.1 uses as is), so the document cannot drift from the validation.
 */
import { z } from 'zod';
import { apiRegistry, LIMITS } from './schemas.ts';

const REQUEST_SCHEMAS = new Set(['SearchRequest', 'SearchFilters']);

function components(): Record<string, unknown> {
  const uri = (id: string) => `#/components/schemas/${id}`;
  // Requests are described as clients send them (defaults make fields optional), answers as sent.
  const input = z.toJSONSchema(apiRegistry, { io: 'input', uri, target: 'draft-2020-12' }).schemas;
  const output = z.toJSONSchema(apiRegistry, { io: 'output', uri, target: 'draft-2020-12' }).schemas;
  const out: Record<string, unknown> = {};
  for (const id of Object.keys(output)) {
    const { $schema: _drop, ...schema } = (REQUEST_SCHEMAS.has(id) ? input[id] : output[id]) as Record<
      string,
      unknown
    >;
    out[id] = schema;
  }
  return out;
}

const ref = (id: string) => ({ $ref: `#/components/schemas/${id}` });
const error = (description: string) => ({
  description,
  content: { 'application/json': { schema: ref('ErrorResponse') } },
});

let cached: Record<string, unknown> | undefined;

/** The OpenAPI 3.1 document (built once). */
export function openApiDocument(): Record<string, unknown> {
  cached ??= {
    openapi: '3.1.0',
    info: {
      title: 'Cohort search API',
      version: '1.0.0',
      description:
        'Semantic cohort search over clinical notes: describe patients in words, get them ranked with evidence.',
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    paths: {
      '/v1/search': {
        post: {
          operationId: 'search',
          summary: 'Find a cohort',
          requestBody: {
            required: true,
            description: `JSON, at most ${LIMITS.bodyBytes} bytes`,
            content: { 'application/json': { schema: ref('SearchRequest') } },
          },
          responses: {
            '200': {
              description: 'the cohort (JSON, CSV or a FHIR R4 Group, by `format`)',
              headers: {
                'x-next-cursor': {
                  description: 'the next page (exhaustive mode)',
                  schema: { type: 'string' },
                },
              },
              content: {
                'application/json': { schema: ref('SearchResponse') },
                'text/csv': { schema: { type: 'string' } },
                'application/fhir+json': {
                  schema: { type: 'object', description: 'FHIR R4 Group, actual: true' },
                },
              },
            },
            '400': error('invalid body, with field-level issues, or a cursor of another search'),
            '401': error('no caller identity'),
            '409': error('the index changed between two pages'),
            '413': error('body too large'),
            '415': error('body is not JSON'),
            '429': error('too many searches in flight'),
            '503': error('index, model or audit store unavailable, with the reason'),
          },
        },
      },
      '/v1/health': {
        get: {
          operationId: 'health',
          summary: 'Manifest version, segments loaded, model fingerprint, warm or cold',
          responses: {
            '200': {
              description: 'ready',
              content: { 'application/json': { schema: ref('HealthResponse') } },
            },
            '401': error('no caller identity'),
            '503': {
              description: 'unavailable, with the reason',
              content: { 'application/json': { schema: ref('HealthResponse') } },
            },
          },
        },
      },
      '/openapi.json': {
        get: {
          operationId: 'openapi',
          security: [],
          summary: 'This document',
          responses: { '200': { description: 'OpenAPI 3.1', content: { 'application/json': {} } } },
        },
      },
    },
    components: {
      schemas: components(),
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description:
            'API Gateway JWT authorizer in AWS (or IAM SigV4); the static --token of cohort serve locally',
        },
      },
    },
  };
  return cached;
}
