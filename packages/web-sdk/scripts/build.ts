// Bundles the SDK for browsers: src/index.ts → dist/usher.js (ESM, ES2022, with a source map).
//
//   npm run build -w packages/web-sdk
//   node scripts/build.ts --out <file>    elsewhere (npm run pack builds into its staging folder)
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const root = new URL('..', import.meta.url);
const { values } = parseArgs({ options: { out: { type: 'string' } } });

const result = await build({
  entryPoints: [new URL('src/index.ts', root).pathname],
  outfile: values.out ? resolve(values.out) : new URL('dist/usher.js', root).pathname,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  sourcemap: true,
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning',
});

// the files that ended up in the bundle (esbuild also lists the ones it read and then left out)
const [, output] = Object.entries(result.metafile.outputs).find(([file]) => file.endsWith('.js'))!;
const inputs = Object.keys(output.inputs).filter((file) => output.inputs[file]!.bytesInOutput > 0);
const foreign = inputs.filter((file) => file.includes('node_modules'));
if (foreign.length > 0) {
  const list = foreign.slice(0, 5).join(', ');
  throw new Error(`the browser bundle must not contain dependencies, but it has ${foreign.length}: ${list}…`);
}
console.log(`dist/usher.js: ${output.bytes} bytes from ${inputs.join(', ')}`);
