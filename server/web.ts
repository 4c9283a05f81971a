import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Hono } from 'hono';

/** The analysts' page: plain ES modules and CSS in server/web/, served as they are (no bundler, no build step). */
export const WEB_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'web');

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml',
};

/**
 * The page may load and reach only this origin: no CDN, no font service, no inline script, so an
 * output or a record field shown on it can never run as code or call out.
 */
const PAGE_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * Serves the page at `/` and its files at `/web/{name}`. Only the files the folder held when the
 * server started are served, by exact name: a request cannot reach anything else on the machine.
 * Files are read on each request, so an edited page shows on reload without a restart.
 */
// biome-ignore lint/suspicious/noExplicitAny: the page hangs off any app, whatever its variables
export function mountWebPage(app: Hono<any>): void {
  const files = new Set(readdirSync(WEB_DIR).filter((name) => TYPES[extensionOf(name)] !== undefined));
  const send = (name: string) =>
    new Response(readFileSync(path.join(WEB_DIR, name)), {
      headers: {
        'content-type': TYPES[extensionOf(name)]!,
        'content-security-policy': PAGE_POLICY,
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
        // Small files, changed with the server: always ask again (a 200 costs a few kB on a LAN).
        'cache-control': 'no-cache',
      },
    });
  app.get('/', () => send('index.html'));
  app.get('/web/:name', (c) => {
    const name = c.req.param('name');
    return files.has(name) ? send(name) : c.json({ error: `no page file ${name}` }, 404);
  });
}

function extensionOf(name: string): string {
  return name.slice(name.lastIndexOf('.') + 1);
}
