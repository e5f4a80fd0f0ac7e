/**
 * The local HTTP server (`cohort serve`): the Lambda's router behind `node:http`, plus the web page
 * from the repository's `web/` directory. Bound to 127.0.0.1 by default; with a token, every `/v1/*`
 * call must carry `Authorization: Bearer <token>`. Without one, the caller is the local user (the
 * loopback binding is the protection), named in audit records by the OS user name.
 */
import { timingSafeEqual } from 'node:crypto';
import { readFile, realpath, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { userInfo } from 'node:os';
import { extname, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EncoderLogger } from '@cohort/encoder';
import { MethodNotAllowedError, NotFoundError, PayloadTooLargeError } from './errors.ts';
import { createRouter, errorResponse, type Router, type RouterResponse } from './router.ts';
import { LIMITS } from './schemas.ts';
import type { Identity, QueryService } from './service.ts';

/** The repository's `web/` directory (the page, its script and style). */
export const DEFAULT_WEB_DIR = fileURLToPath(new URL('../../../web/', import.meta.url));

/** Options of {@link createQueryServer}. */
export interface QueryServerOptions {
  /** The service, or a function giving it (loaded on the first request that needs it). */
  readonly service: QueryService | (() => Promise<QueryService>);
  /** Interface to bind. Default `127.0.0.1` (loopback only). */
  readonly host?: string;
  /** Port. Default 8080; 0 picks a free one. */
  readonly port?: number;
  /** Static bearer token required on `/v1/*`. Default none (the local user). */
  readonly token?: string;
  /** Directory of the web page. Default {@link DEFAULT_WEB_DIR}; null serves no page. */
  readonly webDir?: string | null;
  readonly logger?: EncoderLogger;
}

/** A listening server. */
export interface RunningQueryServer {
  readonly server: Server;
  /** `http://host:port` */
  readonly url: string;
  readonly port: number;
  /** Stops accepting connections, ends idle ones, and resolves when the server closed. */
  close(): Promise<void>;
}

/** Security headers of every answer: the page may load only its own files. */
export const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
} as const;

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.woff2': 'font/woff2',
};

function send(res: ServerResponse, r: RouterResponse, head = false): void {
  res.writeHead(r.status, { ...SECURITY_HEADERS, ...r.headers });
  res.end(head ? undefined : r.body);
}

/**
 * Reads a body up to the limit. Past it, rejects at once and lets the rest of the upload drain
 * unread (the connection closes after the answer), so the client still gets its 413.
 * @throws PayloadTooLargeError past the limit
 */
function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolveBody, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      req.resume();
      reject(new PayloadTooLargeError(limit));
      return;
    }
    const parts: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > limit) {
        over = true;
        parts.length = 0;
        reject(new PayloadTooLargeError(limit));
        return;
      }
      parts.push(chunk);
    });
    req.on('end', () => {
      if (!over) resolveBody(Buffer.concat(parts).toString('utf8'));
    });
    req.on('error', (error) => {
      if (!over) reject(error);
    });
  });
}

function sameToken(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * A file of the web directory for a URL path, or undefined. Refuses anything that could leave the
 * directory: encoded or plain `..`, backslashes, NUL, and symbolic links pointing outside.
 */
async function staticFile(
  webDir: string,
  urlPath: string,
): Promise<{ bytes: Buffer; type: string } | undefined> {
  let path: string;
  try {
    path = decodeURIComponent(urlPath);
  } catch {
    return undefined;
  }
  if (path === '/') path = '/index.html';
  if (path.includes('\0') || path.includes('\\') || path.split('/').some((p) => p === '..' || p === '.'))
    return undefined;
  const root = await realpath(webDir).catch(() => undefined);
  if (!root) return undefined;
  const file = resolve(root, `.${path}`);
  if (!file.startsWith(root + sep)) return undefined;
  try {
    const real = await realpath(file);
    if (!real.startsWith(root + sep) || !(await stat(real)).isFile()) return undefined;
    return {
      bytes: await readFile(real),
      type: CONTENT_TYPES[extname(real).toLowerCase()] ?? 'application/octet-stream',
    };
  } catch {
    return undefined;
  }
}

/** Starts the local API server (see the module comment). */
export async function createQueryServer(options: QueryServerOptions): Promise<RunningQueryServer> {
  const router: Router = createRouter({
    service: options.service,
    ...(options.logger ? { logger: options.logger } : {}),
  });
  const webDir = options.webDir === undefined ? DEFAULT_WEB_DIR : options.webDir;
  const localUser: Identity = { id: `local:${safeUserName()}`, kind: 'local' };

  const identityOf = (req: IncomingMessage): Identity | undefined => {
    if (options.token === undefined) return localUser;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    return m && sameToken(m[1]!, options.token) ? { id: 'token', kind: 'token' } : undefined;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = (req.method ?? 'GET').toUpperCase();
    const path = (req.url ?? '/').split('?')[0]!;
    const isApi = path.startsWith('/v1/') || path === '/openapi.json';
    if (!isApi) {
      if (method !== 'GET' && method !== 'HEAD') {
        req.resume();
        return send(
          res,
          errorResponse(webDir ? new MethodNotAllowedError(['GET', 'HEAD']) : new NotFoundError()),
        );
      }
      const file = webDir ? await staticFile(webDir, path) : undefined;
      if (!file) return send(res, errorResponse(new NotFoundError()), method === 'HEAD');
      res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': file.type, 'cache-control': 'no-cache' });
      res.end(method === 'HEAD' ? undefined : file.bytes);
      return;
    }
    let body: string | undefined;
    try {
      body = await readBody(req, LIMITS.bodyBytes);
    } catch (error) {
      if (!(error instanceof PayloadTooLargeError)) return void res.destroy();
      res.setHeader('connection', 'close');
      return send(res, errorResponse(error));
    }
    const identity = identityOf(req);
    const headers: Record<string, string | undefined> = {};
    for (const [k, v] of Object.entries(req.headers)) headers[k] = Array.isArray(v) ? v.join(', ') : v;
    const r = await router({
      method,
      path,
      headers,
      ...(body ? { body } : {}),
      ...(identity ? { identity } : {}),
    });
    if (r.status === 401 && options.token !== undefined) r.headers['www-authenticate'] = 'Bearer';
    send(res, r, method === 'HEAD');
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      // Only a broken connection lands here; the router answers every other failure itself.
      if (!res.headersSent)
        send(res, {
          status: 500,
          headers: {},
          body: '{"error":{"code":"internal","message":"internal error"}}',
        });
      else res.destroy();
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.on('clientError', (_error, socket) => {
    if (socket.writable)
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8080, host, () => {
      server.off('error', reject);
      resolveListen();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    server,
    url: `http://${urlHost}:${port}`,
    port,
    close: () =>
      new Promise<void>((done, fail) => {
        server.close((error) => (error ? fail(error) : done()));
        server.closeIdleConnections();
      }),
  };
}

function safeUserName(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}
