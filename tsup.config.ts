import { defineConfig } from 'tsup';

// One ESM and one CommonJS build with declarations for both: arvo's packages are CommonJS, pg-boss is
// ESM-only (loaded through require(esm) from the CommonJS build on Node >= 20.19).
export default defineConfig({
  entry: { index: 'src/index.ts', cli: 'src/cli/main.ts' },
  format: ['esm', 'cjs'],
  dts: { entry: { index: 'src/index.ts' } },
  sourcemap: true,
  clean: true,
  target: 'node20',
  splitting: false,
});
