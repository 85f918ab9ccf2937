import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** A static file of the dashboard, read once. */
export interface Asset {
  body: Buffer;
  contentType: string;
  etag: string;
}

const CONTENT_TYPES: Record<string, string> = {
  'dashboard.css': 'text/css; charset=utf-8',
  'dashboard.js': 'text/javascript; charset=utf-8',
};

/**
 * Where the files are: `src/dashboard/assets` beside this module when run from source, and
 * `dist/dashboard-assets` beside the bundle (tsup copies them there; `files` ships `dist`).
 */
function assetsDirectory(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const bundled = path.join(here, 'dashboard-assets');
  return existsSync(bundled) ? bundled : path.join(here, 'assets');
}

const cache = new Map<string, Asset>();

/** The asset called `name`, or null when there is none by that name. */
export function dashboardAsset(name: string): Asset | null {
  const contentType = CONTENT_TYPES[name];
  if (!contentType) return null;
  let asset = cache.get(name);
  if (!asset) {
    const body = readFileSync(path.join(assetsDirectory(), name));
    asset = {
      body,
      contentType,
      etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 16)}"`,
    };
    cache.set(name, asset);
  }
  return asset;
}
