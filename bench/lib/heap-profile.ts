// Sums up a V8 .heapprofile (BENCH_HEAP_SAMPLE, server-fixture.ts): the bytes allocated by each function itself
// and with what it calls, largest first, optionally per unit of work (per admission, per message).
//   npx node bench/lib/heap-profile.ts <file.heapprofile> [units] [rows]
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapNode[];
}

export interface HeapSite {
  where: string;
  bytes: number;
  share: number;
}

/** Self and inclusive bytes per function, largest first. */
export function heapSites(
  file: string,
  rows = 30,
): { total: number; self: HeapSite[]; inclusive: HeapSite[] } {
  const { head } = JSON.parse(readFileSync(file, 'utf8')) as { head: HeapNode };
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let total = 0;
  const walk = (node: HeapNode, stack: string[]) => {
    const cf = node.callFrame;
    const url = cf.url.startsWith('file://') ? relative(process.cwd(), new URL(cf.url).pathname) : cf.url;
    const where = `${cf.functionName || '(anonymous)'} ${url}${url ? `:${cf.lineNumber + 1}` : ''}`;
    const path = [...stack, where];
    total += node.selfSize;
    self.set(where, (self.get(where) ?? 0) + node.selfSize);
    for (const w of new Set(path)) inclusive.set(w, (inclusive.get(w) ?? 0) + node.selfSize);
    for (const c of node.children) walk(c, path);
  };
  walk(head, []);
  const top = (m: Map<string, number>) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, rows)
      .map(([where, bytes]) => ({ where, bytes, share: bytes / Math.max(1, total) }));
  return { total, self: top(self), inclusive: top(inclusive) };
}

if (import.meta.main) {
  const [file, units = '1', rows = '30'] = process.argv.slice(2);
  if (!file) throw new Error('usage: npx node bench/lib/heap-profile.ts <file.heapprofile> [units] [rows]');
  const n = Number(units);
  const { total, self, inclusive } = heapSites(file, Number(rows));
  const kb = (b: number) => `${(b / 1024 / n).toFixed(2)} KiB`;
  console.log(`${(total / 1024 / 1024).toFixed(1)} MiB sampled${n > 1 ? `, ${kb(total)} per unit` : ''}`);
  for (const [title, list] of [
    ['by the function itself', self],
    ['with what it calls', inclusive],
  ] as const) {
    console.log(`\n${title}:`);
    for (const s of list)
      console.log(`${(s.share * 100).toFixed(1).padStart(5)}%  ${kb(s.bytes).padStart(12)}  ${s.where}`);
  }
}
