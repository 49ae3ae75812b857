// Bundles the dashboard for browsers: src/main.ts → dist/dashboard.js (ESM, ES2022, minified, with a source
// map), and copies static/ (index.html, dashboard.css) beside it. The server serves dist/ at /dashboard/.
//
//   npm run build -w packages/dashboard
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { build } from 'esbuild';

const root = new URL('..', import.meta.url);
const dist = new URL('dist/', root);

const result = await build({
  entryPoints: [new URL('src/main.ts', root).pathname],
  outfile: new URL('dashboard.js', dist).pathname,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  metafile: true,
  legalComments: 'eof',
  logLevel: 'warning',
});

mkdirSync(dist, { recursive: true });
for (const file of readdirSync(new URL('static/', root)))
  copyFileSync(new URL(`static/${file}`, root), new URL(file, dist));

const [, output] = Object.entries(result.metafile.outputs).find(([file]) => file.endsWith('.js'))!;
console.log(`dist/dashboard.js: ${output.bytes} bytes`);
