import { cp } from 'node:fs/promises';
import { defineConfig } from 'tsup';

// One ESM and one CommonJS build with declarations for both: arvo's packages are CommonJS, pg-boss is
// ESM-only (loaded through require(esm) from the CommonJS build on Node >= 20.19). The dashboard's
// CSS and JS files are copied beside the bundles (`dist/dashboard-assets`), where it reads them.
export default defineConfig({
  entry: { index: 'src/index.ts', cli: 'src/cli/main.ts' },
  format: ['esm', 'cjs'],
  dts: { entry: { index: 'src/index.ts' } },
  sourcemap: true,
  clean: true,
  target: 'node20',
  splitting: false,
  // import.meta.url in the CommonJS build (the dashboard locates its assets with it).
  shims: true,
  async onSuccess() {
    await cp('src/dashboard/assets', 'dist/dashboard-assets', { recursive: true });
  },
});
