/**
 * A small S3-protocol server on 127.0.0.1, written for the object-store tests because the S3 server
 * on npm (s3rver) ignores conditional headers. It keeps objects in memory and follows S3's
 * documented behaviour for conditional writes:
 * - PutObject / CompleteMultipartUpload with `If-None-Match: *` → 412 PreconditionFailed when the
 *   key exists; with `If-Match: etag` → 412 when the etag differs, 404 NoSuchKey when the key is gone.
 * - Optionally (`conflictOnConcurrentWrites`) a conditional write that arrives while another
 *   conditional write to the same key is in flight gets 409 ConditionalRequestConflict, which S3
 *   asks clients to retry. `writeDelayMs` widens that window so the tests can hit it.
 * - The condition is checked and the object replaced in one synchronous step (Node runs one
 *   callback at a time), so conditional writes are atomic here as they are on S3.
 * It also serves GetObject (Range → 206, If-Match), HeadObject, DeleteObject, ListObjectsV2 (with
 * pagination), CreateBucket, and CreateMultipartUpload / UploadPart / CompleteMultipartUpload /
 * AbortMultipartUpload, enough for `@aws-sdk/lib-storage`. Faults can be injected (`failNext`).
 * Any bucket exists. No authentication: signatures are not checked.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One stored object. */
export interface StoredObject {
  readonly body: Buffer;
  readonly etag: string;
  readonly contentType: string;
  readonly lastModified: Date;
}

/** A fault served instead of (or, with `applyFirst`, after applying) the next matching requests. */
export interface Fault {
  /** HTTP method to match. Default: any. */
  readonly method?: string;
  /** Object key prefix to match (without bucket). Default: any. */
  readonly keyPrefix?: string;
  /** HTTP status to answer, e.g. 503. */
  readonly status: number;
  /** S3 error code, e.g. `SlowDown`. */
  readonly code: string;
  /** How many requests to fail. Default 1. */
  readonly count?: number;
  /** Apply the request, then answer the fault (an ambiguous failure, like a lost response). Default false. */
  readonly applyFirst?: boolean;
}

/** One request as the server saw it. */
export interface RecordedRequest {
  readonly method: string;
  readonly bucket: string;
  readonly key: string;
  readonly query: URLSearchParams;
  readonly headers: IncomingHttpHeaders;
  status: number;
}

/** Options of {@link startConditionalS3Server}. */
export interface ConditionalS3ServerOptions {
  /** Answer 409 ConditionalRequestConflict to a conditional write that overlaps another. Default false. */
  readonly conflictOnConcurrentWrites?: boolean;
  /** Delay before a write is applied, to make concurrent writes overlap. Default 0 ms. */
  readonly writeDelayMs?: number;
  /** Keys per ListObjectsV2 page (at most the request's max-keys). Default 1000. */
  readonly listPageSize?: number;
}

/** A running server. */
export interface ConditionalS3Server {
  /** `http://127.0.0.1:PORT`, for the SDK's `endpoint` (with `forcePathStyle: true`). */
  readonly endpoint: string;
  /** Stored objects by `bucket/key`. */
  readonly objects: Map<string, StoredObject>;
  /** Every request, in arrival order. */
  readonly requests: RecordedRequest[];
  /** Queues a fault. */
  failNext(fault: Fault): void;
  /** Stops the server. */
  close(): Promise<void>;
}

interface Reply {
  status: number;
  headers?: Record<string, string>;
  body?: Buffer | string;
}

const md5 = (data: Buffer) => createHash('md5').update(data).digest();
const unquote = (etag: string) => etag.trim().replace(/^W\//, '').replace(/^"|"$/g, '');
const xmlEscape = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const xmlUnescape = (s: string) =>
  s
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms));

function s3Error(status: number, code: string, message = code): Reply {
  return {
    status,
    headers: { 'content-type': 'application/xml' },
    body: `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${xmlEscape(message)}</Message><RequestId>test</RequestId></Error>`,
  };
}

function xml(body: string): Reply {
  return {
    status: 200,
    headers: { 'content-type': 'application/xml' },
    body: `<?xml version="1.0" encoding="UTF-8"?>\n${body}`,
  };
}

/** Starts the server on 127.0.0.1 and an ephemeral port. */
export async function startConditionalS3Server(
  options: ConditionalS3ServerOptions = {},
): Promise<ConditionalS3Server> {
  const objects = new Map<string, StoredObject>();
  const uploads = new Map<string, { key: string; parts: Map<number, { body: Buffer; etag: string }> }>();
  const inFlight = new Set<string>();
  const faults: { fault: Fault; left: number }[] = [];
  const requests: RecordedRequest[] = [];

  async function conditionalWrite(
    fullKey: string,
    headers: IncomingHttpHeaders,
    produce: () => StoredObject | Reply,
  ): Promise<Reply> {
    const ifNoneMatch = headers['if-none-match'];
    const ifMatch = headers['if-match'];
    const conditional = ifNoneMatch !== undefined || ifMatch !== undefined;
    if (conditional && options.conflictOnConcurrentWrites) {
      if (inFlight.has(fullKey)) {
        return s3Error(
          409,
          'ConditionalRequestConflict',
          'a conflicting conditional operation is in progress',
        );
      }
      inFlight.add(fullKey);
    }
    try {
      if (options.writeDelayMs) await sleep(options.writeDelayMs);
      // From here to objects.set nothing awaits: check and write are one atomic step.
      const current = objects.get(fullKey);
      if (ifNoneMatch !== undefined) {
        if (ifNoneMatch.trim() !== '*')
          return s3Error(501, 'NotImplemented', 'If-None-Match supports only *');
        if (current) return s3Error(412, 'PreconditionFailed', 'At least one of the pre-conditions failed');
      }
      if (ifMatch !== undefined) {
        if (!current) return s3Error(404, 'NoSuchKey', 'The specified key does not exist.');
        if (ifMatch.trim() !== '*' && unquote(ifMatch) !== unquote(current.etag)) {
          return s3Error(412, 'PreconditionFailed', 'At least one of the pre-conditions failed');
        }
      }
      const produced = produce();
      if (!('body' in produced && 'etag' in produced)) return produced;
      objects.set(fullKey, produced);
      return { status: 200, headers: { etag: produced.etag } };
    } finally {
      if (conditional && options.conflictOnConcurrentWrites) inFlight.delete(fullKey);
    }
  }

  function listObjects(bucket: string, query: URLSearchParams): Reply {
    if (query.get('list-type') !== '2') return s3Error(501, 'NotImplemented', 'only ListObjectsV2');
    const prefix = query.get('prefix') ?? '';
    const maxKeys = Math.min(Number(query.get('max-keys') ?? 1000), options.listPageSize ?? 1000);
    const token = query.get('continuation-token');
    const after = token ? Buffer.from(token, 'base64url').toString() : (query.get('start-after') ?? '');
    const keys = [...objects.keys()]
      .filter((k) => k.startsWith(`${bucket}/`))
      .map((k) => k.slice(bucket.length + 1))
      .filter((k) => k.startsWith(prefix) && k > after)
      .sort();
    const page = keys.slice(0, maxKeys);
    const truncated = keys.length > page.length;
    const contents = page
      .map((k) => {
        const o = objects.get(`${bucket}/${k}`)!;
        return `<Contents><Key>${xmlEscape(k)}</Key><LastModified>${o.lastModified.toISOString()}</LastModified><ETag>${xmlEscape(o.etag)}</ETag><Size>${o.body.length}</Size><StorageClass>STANDARD</StorageClass></Contents>`;
      })
      .join('');
    const next =
      truncated && page.length > 0
        ? `<NextContinuationToken>${Buffer.from(page[page.length - 1]!).toString('base64url')}</NextContinuationToken>`
        : '';
    return xml(
      `<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${xmlEscape(bucket)}</Name><Prefix>${xmlEscape(prefix)}</Prefix><KeyCount>${page.length}</KeyCount><MaxKeys>${maxKeys}</MaxKeys><IsTruncated>${truncated}</IsTruncated>${contents}${next}</ListBucketResult>`,
    );
  }

  function readObject(method: string, fullKey: string, headers: IncomingHttpHeaders): Reply {
    const current = objects.get(fullKey);
    if (!current)
      return method === 'HEAD'
        ? { status: 404 }
        : s3Error(404, 'NoSuchKey', 'The specified key does not exist.');
    const ifMatch = headers['if-match'];
    if (ifMatch !== undefined && ifMatch.trim() !== '*' && unquote(ifMatch) !== unquote(current.etag)) {
      return method === 'HEAD' ? { status: 412 } : s3Error(412, 'PreconditionFailed');
    }
    const base = {
      etag: current.etag,
      'content-type': current.contentType,
      'last-modified': current.lastModified.toUTCString(),
      'accept-ranges': 'bytes',
    };
    const size = current.body.length;
    const range = headers.range;
    if (range !== undefined && method === 'GET') {
      const m = /^bytes=(\d+)-(\d*)$/.exec(range.trim());
      if (!m) return s3Error(400, 'InvalidArgument', `unsupported range ${range}`);
      const start = Number(m[1]);
      const end = Math.min(m[2] ? Number(m[2]) : size - 1, size - 1);
      if (start >= size || end < start)
        return s3Error(416, 'InvalidRange', 'The requested range is not satisfiable');
      return {
        status: 206,
        headers: { ...base, 'content-range': `bytes ${start}-${end}/${size}` },
        body: current.body.subarray(start, end + 1),
      };
    }
    return {
      status: 200,
      headers: { ...base, 'content-length': String(size) },
      body: method === 'HEAD' ? undefined : current.body,
    };
  }

  async function handle(
    req: IncomingMessage,
    body: Buffer,
    bucket: string,
    key: string,
    query: URLSearchParams,
  ): Promise<Reply> {
    const method = req.method ?? 'GET';
    const fullKey = `${bucket}/${key}`;
    if (req.headers['content-encoding']?.includes('aws-chunked')) {
      return s3Error(501, 'NotImplemented', 'aws-chunked uploads are not supported by this test server');
    }
    if (key === '') {
      if (method === 'GET') return listObjects(bucket, query);
      if (method === 'PUT' || method === 'HEAD') return { status: 200 };
      return s3Error(501, 'NotImplemented');
    }
    if (method === 'GET' || method === 'HEAD') return readObject(method, fullKey, req.headers);
    if (method === 'PUT' && query.has('uploadId')) {
      const upload = uploads.get(query.get('uploadId')!);
      if (!upload) return s3Error(404, 'NoSuchUpload');
      const etag = `"${md5(body).toString('hex')}"`;
      upload.parts.set(Number(query.get('partNumber')), { body, etag });
      return { status: 200, headers: { etag } };
    }
    if (method === 'PUT') {
      if (req.headers['x-amz-copy-source']) return s3Error(501, 'NotImplemented', 'CopyObject');
      return conditionalWrite(fullKey, req.headers, () => ({
        body,
        etag: `"${md5(body).toString('hex')}"`,
        contentType: req.headers['content-type'] ?? 'application/octet-stream',
        lastModified: new Date(),
      }));
    }
    if (method === 'POST' && query.has('uploads')) {
      const uploadId = randomUUID();
      uploads.set(uploadId, { key: fullKey, parts: new Map() });
      return xml(
        `<InitiateMultipartUploadResult><Bucket>${xmlEscape(bucket)}</Bucket><Key>${xmlEscape(key)}</Key><UploadId>${uploadId}</UploadId></InitiateMultipartUploadResult>`,
      );
    }
    if (method === 'POST' && query.has('uploadId')) {
      const uploadId = query.get('uploadId')!;
      const upload = uploads.get(uploadId);
      if (!upload || upload.key !== fullKey) return s3Error(404, 'NoSuchUpload');
      const listed = [...body.toString().matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map((m) => ({
        number: Number(/<PartNumber>(\d+)<\/PartNumber>/.exec(m[1]!)?.[1]),
        etag: xmlUnescape(/<ETag>([\s\S]*?)<\/ETag>/.exec(m[1]!)?.[1] ?? ''),
      }));
      const reply = await conditionalWrite(fullKey, req.headers, () => {
        const bodies: Buffer[] = [];
        const digests: Buffer[] = [];
        let previous = 0;
        for (const part of listed) {
          const stored = upload.parts.get(part.number);
          if (!stored || unquote(stored.etag) !== unquote(part.etag)) return s3Error(400, 'InvalidPart');
          if (part.number <= previous) return s3Error(400, 'InvalidPartOrder');
          previous = part.number;
          bodies.push(stored.body);
          digests.push(md5(stored.body));
        }
        return {
          body: Buffer.concat(bodies),
          etag: `"${md5(Buffer.concat(digests)).toString('hex')}-${listed.length}"`,
          contentType: 'application/octet-stream',
          lastModified: new Date(),
        };
      });
      if (reply.status !== 200) return reply;
      uploads.delete(uploadId);
      const etag = reply.headers?.['etag'] ?? '';
      return xml(
        `<CompleteMultipartUploadResult><Location>/${xmlEscape(fullKey)}</Location><Bucket>${xmlEscape(bucket)}</Bucket><Key>${xmlEscape(key)}</Key><ETag>${xmlEscape(etag)}</ETag></CompleteMultipartUploadResult>`,
      );
    }
    if (method === 'DELETE' && query.has('uploadId')) {
      uploads.delete(query.get('uploadId')!);
      return { status: 204 };
    }
    if (method === 'DELETE') {
      objects.delete(fullKey);
      return { status: 204 };
    }
    return s3Error(501, 'NotImplemented', `${method} not supported`);
  }

  function send(res: ServerResponse, reply: Reply): void {
    const body = reply.body === undefined ? undefined : Buffer.from(reply.body);
    res.writeHead(reply.status, {
      ...reply.headers,
      ...(body !== undefined && { 'content-length': String(body.length) }),
    });
    res.end(body);
  }

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      void (async () => {
        const url = new URL(req.url ?? '/', 'http://localhost');
        const path = url.pathname.slice(1);
        const slash = path.indexOf('/');
        const bucket = decodeURIComponent(slash < 0 ? path : path.slice(0, slash));
        const key = slash < 0 ? '' : decodeURIComponent(path.slice(slash + 1));
        const record: RecordedRequest = {
          method: req.method ?? 'GET',
          bucket,
          key,
          query: url.searchParams,
          headers: req.headers,
          status: 0,
        };
        requests.push(record);
        const index = faults.findIndex(
          ({ fault, left }) =>
            left > 0 &&
            (fault.method === undefined || fault.method === record.method) &&
            (fault.keyPrefix === undefined || (key !== '' && key.startsWith(fault.keyPrefix))),
        );
        let reply: Reply;
        try {
          const entry = index >= 0 ? faults[index] : undefined;
          if (entry) {
            entry.left--;
            if (entry.fault.applyFirst)
              await handle(req, Buffer.concat(chunks), bucket, key, url.searchParams);
            reply = s3Error(entry.fault.status, entry.fault.code, 'injected fault');
          } else {
            reply = await handle(req, Buffer.concat(chunks), bucket, key, url.searchParams);
          }
        } catch (error) {
          reply = s3Error(500, 'InternalError', String(error));
        }
        record.status = reply.status;
        send(res, record.method === 'HEAD' ? { ...reply, body: undefined } : reply);
      })();
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    objects,
    requests,
    failNext(fault) {
      faults.push({ fault, left: fault.count ?? 1 });
    },
    close() {
      server.closeAllConnections();
      return new Promise<void>((done, fail) => server.close((error) => (error ? fail(error) : done())));
    },
  };
}
