// `npm run bench [-- <name>…] [--cpu-prof]`: runs the benchmarks in bench/ (all, or those named), prints
// their figures and rewrites their sections of BENCHMARKS.md, keeping the sections of the others.
// With --cpu-prof the server process is profiled, its top self-time functions are printed, and
// BENCHMARKS.md is left alone (profiled figures are slower than real ones).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { admissionBenchmark } from './admission.ts';
import { clusterBenchmark } from './cluster.ts';
import { type Benchmark, type BenchResult, type Machine, machine } from './lib/harness.ts';
import { messagesBenchmark } from './messages.ts';
import { queueBenchmark } from './queue.ts';
import { streamingBenchmark } from './streaming.ts';

/** Every benchmark, in the order of BENCHMARKS.md. */
const BENCHMARKS: readonly Benchmark[] = [
  admissionBenchmark,
  queueBenchmark,
  streamingBenchmark,
  messagesBenchmark,
  clusterBenchmark,
];

const FILE = join(import.meta.dirname, '..', 'BENCHMARKS.md');

const HEADER = `# Benchmarks

Written by \`npm run bench\` (\`bench/run.ts\`). \`npm run bench -- <name>\` reruns one benchmark and replaces only
its section; \`npm run bench -- <name> --cpu-prof\` profiles the server process instead and prints where its time
goes (without touching this file). Each section says when and on what machine it was measured; every figure
is what was measured there, next to its target and the named alternative it is compared with. All traffic
stays on 127.0.0.1.

To look further into the server process: \`BENCH_SERVER_FLAGS\` adds Node flags to it (\`--trace-gc\`, say), and
\`BENCH_HEAP_SAMPLE=<file>\` writes a sampling profile of what it allocates during the measured phase
(\`BENCH_HEAP_SAMPLE_KEEP=all|promoted|live\`; \`npx node bench/lib/heap-profile.ts <file> [units]\` sums it up).
`;

function parseArgs(argv: string[]): { names: string[]; cpuProf: boolean } {
  const names: string[] = [];
  let cpuProf = false;
  for (const a of argv) {
    if (a === '--cpu-prof') cpuProf = true;
    else if (a.startsWith('-')) throw new Error(`unknown option ${a} (known: --cpu-prof)`);
    else names.push(a);
  }
  const known = BENCHMARKS.map((b) => b.name);
  for (const n of names) {
    if (!known.includes(n)) throw new Error(`no benchmark "${n}" (benchmarks: ${known.join(', ')})`);
  }
  return { names: names.length ? names : known, cpuProf };
}

function cell(s: string): string {
  return s.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

/** A result with the machine's 1-minute load average before and after (other work on the machine shows). */
interface Ran {
  result: BenchResult;
  load: [number, number];
}

function section({ result: r, load }: Ran, m: Machine): string {
  const lines = [
    `<!-- bench:${r.name} -->`,
    `## ${r.title}`,
    '',
    `Measured ${m.date} on ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB memory, Node ${m.node}; 1-minute load average (this run's processes included) ${load[0]} before, ${load[1]} after: \`npm run bench -- ${r.name}\`.`,
    '',
    '| figure | measured | target | alternative |',
    '|---|---|---|---|',
    ...r.figures.map(
      (f) => `| ${cell(f.name)} | ${cell(f.value)} | ${cell(f.target)} | ${cell(f.alternative)} |`,
    ),
    '',
    'How it is measured:',
    '',
    ...r.method.map((l) => `- ${l}`),
  ];
  if (r.notes.length) lines.push('', 'Notes:', '', ...r.notes.map((l) => `- ${l}`));
  lines.push(`<!-- /bench:${r.name} -->`);
  return lines.join('\n');
}

/** The sections already in BENCHMARKS.md, by benchmark name. */
function existingSections(): Map<string, string> {
  const sections = new Map<string, string>();
  if (!existsSync(FILE)) return sections;
  const text = readFileSync(FILE, 'utf8');
  for (const m of text.matchAll(/<!-- bench:([\w-]+) -->[\s\S]*?<!-- \/bench:\1 -->/g)) {
    sections.set(m[1]!, m[0]);
  }
  return sections;
}

function write(results: Ran[], m: Machine): void {
  const sections = existingSections();
  for (const r of results) sections.set(r.result.name, section(r, m));
  const ordered = [
    ...BENCHMARKS.map((b) => b.name).filter((n) => sections.has(n)),
    ...[...sections.keys()].filter((n) => !BENCHMARKS.some((b) => b.name === n)),
  ];
  writeFileSync(FILE, `${HEADER}\n${ordered.map((n) => sections.get(n)).join('\n\n')}\n`);
}

function print(r: BenchResult): void {
  console.log(`\n${r.title}`);
  for (const f of r.figures) {
    console.log(`  ${f.name}: ${f.value}`);
    console.log(`      target ${f.target}; alternative: ${f.alternative}`);
  }
  for (const n of r.notes) console.log(`  note: ${n}`);
}

let args: { names: string[]; cpuProf: boolean };
try {
  args = parseArgs(process.argv.slice(2));
} catch (err) {
  console.error((err as Error).message);
  process.exit(2);
}
const { names, cpuProf } = args;
const m = machine();
console.log(
  `Benchmarks ${names.join(', ')} on ${m.cpus} CPUs, ${m.memoryGiB} GiB, Node ${m.node}, ${m.date}${cpuProf ? ' (server CPU profile)' : ''}`,
);
const results: Ran[] = [];
const load = () => Math.round(loadavg()[0]! * 100) / 100;
let failed = false;
const started = Date.now();
for (const b of BENCHMARKS.filter((x) => names.includes(x.name))) {
  const t = Date.now();
  try {
    const before = load();
    const r = await b.run({ cpuProf, log: (line) => console.log(line) });
    results.push({ result: r, load: [before, load()] });
    print(r);
    console.log(`  (${b.name} took ${Math.round((Date.now() - t) / 1000)} s)`);
  } catch (err) {
    failed = true;
    console.error(`benchmark ${b.name} failed: ${(err as Error).stack ?? err}`);
  }
}
if (cpuProf) console.log('\n--cpu-prof: BENCHMARKS.md left unchanged');
else if (results.length) {
  write(results, m);
  console.log(
    `\nwrote ${FILE} (${results.map((r) => r.result.name).join(', ')}) in ${Math.round((Date.now() - started) / 1000)} s`,
  );
}
process.exitCode = failed ? 1 : 0;
