import { cp } from 'node:fs/promises';
import { defineConfig } from 'tsup';

// The library in ESM and CommonJS with declarations for both (arvo's packages are CommonJS; pg-boss is
// ESM-only, loaded through require(esm) from the CommonJS build). The CLI is one ESM file: only its bin
// runs it. No source maps: they were two thirds of the tarball and users debug through the .d.ts.
// The dashboard's CSS and JS files are copied beside the bundles (`dist/dashboard-assets`), where it
// reads them. `npm run build` empties dist/ first (the two configs build concurrently, so neither may).
export default defineConfig([
  {
    entry: { index: 'src/index.ts' },
    format: ['esm', 'cjs'],
    dts: true,
    target: 'node22',
    splitting: false,
    // import.meta.url in the CommonJS build (the dashboard locates its assets with it).
    shims: true,
    async onSuccess() {
      await cp('src/dashboard/assets', 'dist/dashboard-assets', { recursive: true });
    },
  },
  {
    entry: { cli: 'src/cli/main.ts' },
    format: ['esm'],
    target: 'node22',
    splitting: false,
  },
]);
