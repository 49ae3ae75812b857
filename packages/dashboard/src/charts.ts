// The overview's three charts (Chart.js): sessions by state over time, queue length and waits, close codes.
// Each canvas also carries an aria-label that says in words what it shows.
import { SESSION_STATES } from '@usher/protocol';
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  type ChartConfiguration,
  Filler,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
} from 'chart.js';
import type { Stats } from './api.ts';
import { clock } from './format.ts';

Chart.register(
  BarController,
  BarElement,
  CategoryScale,
  Filler,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
);
Chart.defaults.animation = false;
Chart.defaults.maintainAspectRatio = false;
Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
Chart.defaults.plugins.legend.labels.boxWidth = 12;

export const LIVE_STATES = SESSION_STATES.filter((s) => s !== 'ended');

/** A CSS custom property of the page (the state colours live in dashboard.css). */
function cssColor(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

type Kind = 'states' | 'queue' | 'closeCodes';

/** Draws (or redraws in place) one chart of `stats` on the canvas. */
export function drawChart(canvas: HTMLCanvasElement, kind: Kind, stats: Stats): void {
  const config = { states: statesConfig, queue: queueConfig, closeCodes: closeCodesConfig }[kind](stats);
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label', describe(kind, stats));
  const existing = Chart.getChart(canvas);
  if (existing) {
    existing.data = config.data;
    existing.update();
  } else new Chart(canvas, config);
}

/** Destroys the chart drawn on the canvas, if any: its resize observers and listeners go with it. */
export function destroyChart(canvas: HTMLCanvasElement): void {
  Chart.getChart(canvas)?.destroy();
}

function labels(stats: Stats): string[] {
  return stats.series.map((p) => clock(p.at));
}

function statesConfig(stats: Stats): ChartConfiguration {
  return {
    type: 'line',
    data: {
      labels: labels(stats),
      datasets: LIVE_STATES.map((state) => {
        const color = cssColor(`--state-${state}`);
        return {
          label: state,
          data: stats.series.map((p) => p.states[state] ?? 0),
          borderColor: color,
          backgroundColor: `${color}55`,
          fill: true,
          pointRadius: 0,
          borderWidth: 1.5,
        };
      }),
    },
    options: {
      interaction: { mode: 'index', intersect: false },
      scales: {
        y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } },
        x: { ticks: { maxTicksLimit: 12 } },
      },
    },
  };
}

function queueConfig(stats: Stats): ChartConfiguration {
  const seconds = (ms: number | null) => (ms === null ? null : Math.round(ms / 100) / 10);
  return {
    type: 'line',
    data: {
      labels: labels(stats),
      datasets: [
        {
          label: 'queue length',
          data: stats.series.map((p) => p.queueLength),
          borderColor: cssColor('--state-queued'),
          backgroundColor: cssColor('--state-queued'),
          yAxisID: 'y',
          pointRadius: 0,
        },
        {
          label: 'average wait (s)',
          data: stats.series.map((p) => seconds(p.waitMsAvg)),
          borderColor: cssColor('--chart-wait'),
          backgroundColor: cssColor('--chart-wait'),
          yAxisID: 'wait',
          pointRadius: 0,
          spanGaps: true,
        },
        {
          label: 'longest wait (s)',
          data: stats.series.map((p) => seconds(p.waitMsMax)),
          borderColor: cssColor('--chart-wait'),
          backgroundColor: cssColor('--chart-wait'),
          borderDash: [4, 4],
          yAxisID: 'wait',
          pointRadius: 0,
          spanGaps: true,
        },
      ],
    },
    options: {
      interaction: { mode: 'index', intersect: false },
      scales: {
        x: { ticks: { maxTicksLimit: 12 } },
        y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: 'sessions' } },
        wait: {
          position: 'right',
          beginAtZero: true,
          grid: { drawOnChartArea: false },
          title: { display: true, text: 'seconds' },
        },
      },
    },
  };
}

function closeCodesConfig(stats: Stats): ChartConfiguration {
  const rows = [...stats.closeCodes].sort((a, b) => a.code - b.code || a.reason.localeCompare(b.reason));
  return {
    type: 'bar',
    data: {
      labels: rows.map((r) => `${r.code} ${r.reason}`),
      datasets: [
        {
          label: 'sessions ended',
          data: rows.map((r) => r.count),
          backgroundColor: rows.map((r) => cssColor(r.code < 4000 ? '--code-clean' : '--code-error')),
        },
      ],
    },
    options: {
      indexAxis: 'y',
      plugins: { legend: { display: false } },
      scales: { x: { beginAtZero: true, ticks: { precision: 0 } } },
    },
  };
}

function describe(kind: Kind, stats: Stats): string {
  const last = stats.series.at(-1);
  if (kind === 'states') {
    const now = LIVE_STATES.map((s) => `${s} ${last?.states[s] ?? 0}`).join(', ');
    return `Sessions by state over ${stats.series.length} intervals; the latest: ${now}`;
  }
  if (kind === 'queue') {
    const longest = Math.max(0, ...stats.series.map((p) => p.queueLength));
    return `Queue length and waits over ${stats.series.length} intervals; the longest queue: ${longest}`;
  }
  if (stats.closeCodes.length === 0) return 'Close codes: no session ended in this period';
  return `Close codes: ${stats.closeCodes.map((c) => `${c.code} ${c.reason}: ${c.count}`).join(', ')}`;
}
