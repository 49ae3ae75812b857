// Bundles the SDK for browsers: src/index.ts → dist/usher.js (ESM, ES2022, with a source map).
//
//   npm run build -w packages/web-sdk
import { build, type Plugin } from 'esbuild';

const root = new URL('..', import.meta.url);

/**
 * @usher/protocol is free of side effects, but its package does not say so: the SDK imports a few constants
 * from it, and without this esbuild would keep the TypeBox schemas (and TypeBox) that the SDK never uses.
 */
const protocolWithoutSideEffects: Plugin = {
  name: 'protocol-without-side-effects',
  setup(b) {
    b.onResolve({ filter: /.*/ }, async (args) => {
      if (args.pluginData === 'resolving') return undefined;
      const fromProtocol =
        args.path === '@usher/protocol' || /\/protocol\/src\/[^/]+\.ts$/.test(args.importer);
      if (!fromProtocol) return undefined;
      const resolved = await b.resolve(args.path, {
        kind: args.kind,
        importer: args.importer,
        resolveDir: args.resolveDir,
        pluginData: 'resolving',
      });
      return { ...resolved, sideEffects: false };
    });
  },
};

const result = await build({
  entryPoints: [new URL('src/index.ts', root).pathname],
  outfile: new URL('dist/usher.js', root).pathname,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  sourcemap: true,
  metafile: true,
  legalComments: 'none',
  plugins: [protocolWithoutSideEffects],
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
