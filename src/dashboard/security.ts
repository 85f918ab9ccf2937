import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * The dashboard's defences, in one place: response headers (CSP without inline script or style,
 * no framing, no referrer), the action token compared in constant time, the cross-site check of
 * every action, and the bounded form body.
 */

/** Scripts and styles only from the dashboard's own files; forms only to itself; never framed. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

export function setSecurityHeaders(res: ServerResponse): void {
  res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
  // Subjects sit in the dashboard's URLs: a link to a trace UI must not carry them along. Not
  // `no-referrer`: with it browsers send `Origin: null` on the dashboard's own form posts.
  res.setHeader('Referrer-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
}

/** Whether `given` is the token, in time independent of where they differ (both are hashed first). */
export function tokenMatches(given: unknown, token: string): boolean {
  if (typeof given !== 'string' || given.length === 0) return false;
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(given), digest(token));
}

/**
 * Why a request is cross-site, or null: a browser names the requesting site in `Sec-Fetch-Site`
 * and the requesting page's origin in `Origin`; an action is accepted only from the dashboard's
 * own pages (or from a client that sends neither, such as curl, which still needs the token).
 */
export function crossSiteReason(req: IncomingMessage): string | null {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return `Sec-Fetch-Site is ${site}`;
  const origin = req.headers.origin;
  if (origin === undefined) return null;
  let host: string | null = null;
  try {
    host = new URL(origin).host;
  } catch {}
  return host !== null && host === req.headers.host ? null : `Origin ${origin} is not this dashboard`;
}

/** Largest form body read (a replay of a full page of ids fits easily). */
const MAX_BODY_BYTES = 64 * 1024;

/** The request's URL-encoded form, or null when it is something else or too large. */
export async function readForm(req: IncomingMessage): Promise<URLSearchParams | null> {
  // A framework's body parser (e.g. express.urlencoded()) may have read the stream already.
  const parsed = (req as { body?: unknown }).body;
  if (parsed && typeof parsed === 'object' && !Buffer.isBuffer(parsed)) {
    const form = new URLSearchParams();
    for (const [key, value] of Object.entries(parsed)) {
      for (const item of Array.isArray(value) ? value : [value]) form.append(key, String(item));
    }
    return form;
  }
  const type = req.headers['content-type'] ?? '';
  if (!type.startsWith('application/x-www-form-urlencoded')) return null;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) return null;
    chunks.push(chunk as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}
