// `npm run pack [-- --out <folder>]`: installable tarballs of the SDKs, for agents, workers and web apps
// that live outside this repository.
//
// In the repository the packages run as TypeScript source (their `exports` point at src/), which Node strips
// of its types. Node does not do that under node_modules, so a package installed elsewhere must be
// JavaScript: each package here is compiled (tsc: .js, .d.ts and source maps in dist/), given a manifest
// whose `exports` point at dist/, and packed with `npm pack`. Default folder: dist/packages.
//
//   npm run pack
//   npm install ./dist/packages/usher-protocol-0.1.0.tgz ./dist/packages/usher-worker-0.1.0.tgz
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = resolve(import.meta.dirname, '..');

interface Packed {
  /** folder under packages/ */
  dir: string;
  /** the bundle the package's own build script (scripts/build.ts --out) makes, as a path in the package */
  bundle?: string;
}

/** In dependency order: a package's dependencies are packed before it. */
export const PACKAGES: Packed[] = [
  { dir: 'protocol' },
  { dir: 'worker-sdk' },
  { dir: 'web-sdk', bundle: 'dist/usher.js' },
];

const { values } = parseArgs({ options: { out: { type: 'string', default: join(ROOT, 'dist/packages') } } });
const out = resolve(values.out!);
mkdirSync(out, { recursive: true });

for (const p of PACKAGES) console.log(pack(p));

function pack(p: Packed): string {
  const dir = join(ROOT, 'packages', p.dir);
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const stage = mkdtempSync(join(tmpdir(), `usher-pack-${p.dir}-`));
  try {
    compile(dir, stage);
    // built now, from the source as it is, straight into the package (the one npm install built may be older,
    // and the server serves that one: it is left alone)
    if (p.bundle)
      execFileSync(process.execPath, [join(dir, 'scripts/build.ts'), '--out', join(stage, p.bundle)], {
        cwd: dir,
        stdio: ['ignore', 'ignore', 'inherit'],
      });
    if (existsSync(join(dir, 'README.md'))) cpSync(join(dir, 'README.md'), join(stage, 'README.md'));
    cpSync(join(ROOT, 'LICENSE'), join(stage, 'LICENSE'));
    writeFileSync(join(stage, 'package.json'), `${JSON.stringify(publishable(manifest), null, 2)}\n`);
    const name = execFileSync('npm', ['pack', '--silent', '--pack-destination', out], {
      cwd: stage,
      encoding: 'utf8',
    }).trim();
    return join(out, name);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/** src/ (tests left out) → stage/dist: JavaScript, declarations and source maps, with the repository's settings. */
function compile(dir: string, stage: string): void {
  const config = join(stage, 'tsconfig.json');
  writeFileSync(
    config,
    JSON.stringify({
      extends: join(ROOT, 'tsconfig.json'),
      compilerOptions: {
        noEmit: false,
        declaration: true,
        sourceMap: true,
        inlineSources: true,
        rootDir: join(dir, 'src'),
        outDir: join(stage, 'dist'),
        typeRoots: [join(ROOT, 'node_modules/@types')],
      },
      include: [join(dir, 'src')],
      exclude: [join(dir, 'src/**/*.test.ts'), join(dir, 'src/fakes.ts')],
    }),
  );
  execFileSync(join(ROOT, 'node_modules/.bin/tsc'), ['-p', config], { cwd: ROOT, stdio: 'inherit' });
  rmSync(config);
}

/** The manifest as installed elsewhere: entry points in dist/, nothing that only the repository needs. */
function publishable(m: Record<string, unknown>): Record<string, unknown> {
  const { devDependencies: _dev, scripts: _scripts, types: _types, files: _files, exports, ...rest } = m;
  const entry = { types: './dist/index.d.ts', default: './dist/index.js' };
  const root = (exports as Record<string, unknown>)['.'];
  const browser = typeof root === 'object' && root && 'browser' in root ? { browser: './dist/usher.js' } : {};
  return {
    ...rest,
    exports: { '.': { types: entry.types, ...browser, default: entry.default } },
    types: entry.types,
    files: ['dist'],
    engines: { node: '>=22' },
  };
}
