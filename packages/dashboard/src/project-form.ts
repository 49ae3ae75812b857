// The project settings form: every setting of ProjectInput as a field, read back into an input for the API,
// and the API's validation errors shown beside the field they name.
import type { Project, ProjectInput } from './api.ts';
import { h } from './dom.ts';

type Timeout = keyof Project['timeouts'];
type WorkerSpec = NonNullable<Project['worker']>;

/** Timeouts shown in seconds, with what happens on expiry. The AFK pair sits with the AFK switch. */
const TIMEOUTS: [Timeout, string, string][] = [
  ['pendingMs', 'Pending', 'requesting + queued; then 4001 pending_timeout'],
  ['connectingMs', 'Connecting', 'then 4003 connecting_timeout'],
  ['seatHoldMs', 'Seat hold', 'worker ready, viewer not attached; then 4005 seat_expired'],
  ['idleMs', 'Idle (agent sessions)', 'no activity at all; then 4004 idle_timeout'],
  ['pausedMs', 'Paused', 'then 4004 paused_timeout'],
  ['maxRuntimeMs', 'Max runtime', 'from first active; 0 = no limit; then 4004 max_runtime'],
  ['reconnectWindowMs', 'Reconnect window', 'viewer link lost; then 4007 reconnect_failed'],
  ['shutdownGraceMs', 'Shutdown grace', 'how long a worker may take to stop'],
];
const AFK_TIMEOUTS: [Timeout, string, string][] = [
  ['afkWarningMs', 'AFK warning after', 'no viewer input while active; then idle and a warning'],
  ['afkDisconnectMs', 'AFK disconnect after the warning', 'then 4004 afk_timeout'],
];

/** A labelled field; `path` (e.g. "timeouts.pendingMs") is where the API's messages point. */
function field(path: string, label: string, input: HTMLElement, hint?: string): HTMLDivElement {
  return h(
    'div',
    { class: 'field', 'data-path': path },
    h('label', null, h('span', { class: 'label' }, label), input),
    hint ? h('small', { class: 'hint' }, hint) : null,
    h('p', { class: 'field-error', hidden: true }),
  );
}

function checkbox(path: string, label: string, checked: boolean, hint?: string): HTMLDivElement {
  return h(
    'div',
    { class: 'field check', 'data-path': path },
    h('label', null, h('input', { type: 'checkbox', name: path, checked }), ' ', label),
    hint ? h('small', { class: 'hint' }, hint) : null,
    h('p', { class: 'field-error', hidden: true }),
  );
}

const num = (name: string, value: number | string, step = '1') =>
  h('input', { type: 'number', name, value: String(value), step, inputmode: 'decimal' });
const text = (name: string, value: string, extra: Record<string, string | boolean> = {}) =>
  h('input', { type: 'text', name, value, ...extra });

export interface ProjectForm {
  el: HTMLFormElement;
  /** The input for POST/PATCH, or null (with the fields marked) when a field cannot be read. */
  read(): ProjectInput | null;
  /** Shows an API error: beside the field its message names, and above the form's button. */
  showError(message: string): void;
  clearErrors(): void;
}

/**
 * The form for an existing project (`project`), or for a new one (`project` null: the essentials only; every
 * other setting takes its default and is edited once the project exists).
 */
export function projectForm(project: Project | null, submitLabel: string): ProjectForm {
  const creating = project === null;
  const worker = project?.worker ?? null;
  const alert = h('p', { class: 'error form-error', role: 'alert', hidden: true });

  // general
  const general = h(
    'fieldset',
    null,
    h('legend', null, 'General'),
    creating
      ? field(
          'id',
          'Project id',
          text('id', '', { required: true, pattern: '[a-z0-9][a-z0-9-]{0,62}' }),
          'lower-case letters, digits and dashes',
        )
      : null,
    field('name', 'Name', text('name', project?.name ?? '')),
    field(
      'kind',
      'Kind',
      h(
        'select',
        { name: 'kind' },
        h('option', { value: 'stream', selected: project?.kind !== 'agent' }, 'stream (Pixel Streaming)'),
        h('option', { value: 'agent', selected: project?.kind === 'agent' }, 'agent (realtime AI)'),
      ),
    ),
    checkbox('public', 'Public', project?.public ?? false, 'viewers may start sessions without an admin key'),
    creating ? checkbox('enabled', 'Enabled', true, 'takes sessions as soon as it is created') : null,
    creating
      ? null
      : [
          field(
            'rooms',
            'Rooms',
            h(
              'select',
              { name: 'rooms' },
              h(
                'option',
                { value: 'builtin', selected: project.rooms === 'builtin' },
                "builtin (Usher's relay)",
              ),
              h('option', { value: 'livekit', selected: project.rooms === 'livekit' }, 'livekit'),
            ),
          ),
          field(
            'agentTypes',
            'Agent types',
            text('agentTypes', project.agentTypes.join(', ')),
            'comma-separated; empty: any',
          ),
          checkbox(
            'reuseWorkers',
            'Reuse workers',
            project.reuseWorkers,
            'keep a worker for the next session instead of recycling it',
          ),
        ],
  );

  // worker
  const driver = h(
    'select',
    { name: 'worker.driver' },
    (['none', 'process', 'external', 'kubernetes'] as const).map((d) =>
      h(
        'option',
        { value: d, selected: (worker?.driver ?? 'none') === d },
        d === 'none' ? 'none (sessions end 4002)' : d,
      ),
    ),
  );
  const lines = (a: readonly string[] | undefined) => (a ?? []).join('\n');
  const commandOf = (w: WorkerSpec | null) => (w && 'command' in w ? w.command : undefined);
  const processFields = h(
    'div',
    { 'data-driver': 'process' },
    field(
      'worker.command',
      'Command',
      h('textarea', { name: 'worker.command', rows: 3 }, lines(commandOf(worker))),
      'one argument per line',
    ),
    field(
      'worker.cwd',
      'Working folder',
      text('worker.cwd', worker?.driver === 'process' ? (worker.cwd ?? '') : ''),
    ),
  );
  const kubeFields = h(
    'div',
    { 'data-driver': 'kubernetes' },
    field('worker.image', 'Image', text('worker.image', worker?.driver === 'kubernetes' ? worker.image : '')),
    field(
      'worker.namespace',
      'Namespace',
      text('worker.namespace', worker?.driver === 'kubernetes' ? (worker.namespace ?? '') : ''),
    ),
    field(
      'worker.command',
      'Command',
      h('textarea', { name: 'worker.k8sCommand', rows: 2 }, lines(commandOf(worker))),
      'one argument per line; empty: the image’s',
    ),
  );
  const showDriver = () => {
    processFields.hidden = driver.value !== 'process';
    kubeFields.hidden = driver.value !== 'kubernetes';
  };
  driver.addEventListener('change', showDriver);
  showDriver();
  const workerSet = h(
    'fieldset',
    null,
    h('legend', null, 'Worker'),
    field('worker', 'Driver', driver),
    processFields,
    kubeFields,
  );

  // pools: one row per region
  const rows = h('tbody');
  const defaultRegion = project?.defaultRegion ?? 'default';
  const addRow = (region: string, min: number | string, max: number | string) => {
    const tr: HTMLTableRowElement = h(
      'tr',
      { class: 'region' },
      h('td', null, text('region', region, { 'aria-label': 'Region' })),
      h('td', null, num('min', min)),
      h('td', null, num('max', max)),
      h(
        'td',
        null,
        h('input', {
          type: 'radio',
          name: 'defaultRegion',
          checked: region === defaultRegion,
          'aria-label': 'Default region',
        }),
      ),
      h('td', null, h('button', { type: 'button', class: 'link', onclick: () => tr.remove() }, 'Remove')),
    );
    rows.append(tr);
  };
  for (const [region, pool] of Object.entries(project?.regions ?? { default: { min: 1, max: 2 } }))
    addRow(region, pool.min, pool.max);
  const pools = h(
    'fieldset',
    null,
    h('legend', null, 'Workers per region'),
    h(
      'div',
      { class: 'field', 'data-path': 'regions' },
      h(
        'table',
        { class: 'regions' },
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            h('th', null, 'Region'),
            h('th', null, 'Min warm'),
            h('th', null, 'Max workers'),
            h('th', null, 'Default'),
            h('th'),
          ),
        ),
        rows,
      ),
      h('p', { class: 'field-error', hidden: true }),
    ),
    h('button', { type: 'button', onclick: () => addRow('', 0, 1) }, 'Add region'),
  );

  const seconds = (ms: number) => String(ms / 1000);
  const rest = creating
    ? [
        h(
          'p',
          { class: 'muted' },
          'Timeouts, AFK, the queue limit and auto-restart take their defaults; change them once the project exists.',
        ),
      ]
    : [
        h(
          'fieldset',
          null,
          h('legend', null, 'Queue and timeouts (seconds)'),
          field(
            'maxQueueLength',
            'Max queue length',
            num('maxQueueLength', project.maxQueueLength),
            'per region; 0: no queue',
          ),
          h(
            'div',
            { class: 'grid' },
            TIMEOUTS.map(([k, label, hint]) =>
              field(`timeouts.${k}`, label, num(`timeouts.${k}`, seconds(project.timeouts[k]), 'any'), hint),
            ),
          ),
        ),
        h(
          'fieldset',
          null,
          h('legend', null, 'AFK'),
          checkbox(
            'afkEnabled',
            'AFK detection on',
            project.afkEnabled,
            'warn, then end sessions whose viewer gives no input',
          ),
          h(
            'div',
            { class: 'grid' },
            AFK_TIMEOUTS.map(([k, label, hint]) =>
              field(`timeouts.${k}`, label, num(`timeouts.${k}`, seconds(project.timeouts[k]), 'any'), hint),
            ),
          ),
        ),
        h(
          'fieldset',
          null,
          h('legend', null, 'Auto-restart'),
          checkbox(
            'autoRestart.enabled',
            'Restart a crashed live session on a fresh worker',
            project.autoRestart.enabled,
          ),
          field(
            'autoRestart.maxRestarts',
            'Max restarts per session',
            num('autoRestart.maxRestarts', project.autoRestart.maxRestarts),
          ),
        ),
      ];

  const el = h(
    'form',
    { class: 'project-form', novalidate: true },
    general,
    workerSet,
    pools,
    rest,
    alert,
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'primary' }, submitLabel)),
  );

  const input = (name: string) => el.querySelector<HTMLInputElement>(`[name="${name}"]`);
  const clearErrors = () => {
    alert.hidden = true;
    for (const f of Array.from(el.querySelectorAll<HTMLElement>('.field-error'))) f.hidden = true;
    for (const f of Array.from(el.querySelectorAll('.invalid'))) f.classList.remove('invalid');
  };
  const mark = (target: Element | null, message: string) => {
    const box = target?.closest('.field, tr.region');
    const slot = (box?.matches('tr') ? box.closest('.field') : box)?.querySelector<HTMLElement>(
      '.field-error',
    );
    box?.classList.add('invalid');
    if (slot) {
      slot.textContent = message;
      slot.hidden = false;
    }
  };

  return {
    el,
    clearErrors,
    showError(message) {
      alert.textContent = message;
      alert.hidden = false;
      // "body.timeouts.pendingMs must be…", "project settings: /timeouts/pendingMs …", "regions.eu: min …"
      const said = message.replaceAll('/', '.');
      const region = /regions\.([a-z0-9-]+)/.exec(said)?.[1];
      const row = Array.from(rows.querySelectorAll('tr')).find(
        (tr) => region && tr.querySelector<HTMLInputElement>('[name="region"]')?.value === region,
      );
      if (row) return mark(row, message);
      const named = Array.from(el.querySelectorAll<HTMLElement>('[data-path]'))
        .filter((f) => f.offsetParent !== null)
        .map((f) => ({ f, path: f.dataset.path! }))
        .filter(({ path }) => new RegExp(`(^|[\\s.])${path.replaceAll('.', '\\.')}($|[^\\w])`).test(said))
        .sort((a, b) => b.path.length - a.path.length)[0];
      if (named) mark(named.f, message);
    },
    read() {
      clearErrors();
      let ok = true;
      const bad = (name: string, message: string) => {
        ok = false;
        mark(input(name), message);
      };
      const number = (name: string, scale = 1): number => {
        const el = input(name)!;
        const v = el.valueAsNumber;
        if (el.value.trim() === '' || !Number.isFinite(v)) {
          bad(name, 'Enter a number.');
          return 0;
        }
        return Math.round(v * scale);
      };
      const out: ProjectInput = {};
      if (creating) out.id = input('id')!.value.trim();
      const name = input('name')!.value.trim();
      if (name || !creating) out.name = name;
      out.kind = el.querySelector<HTMLSelectElement>('[name="kind"]')!.value as Project['kind'];
      out.public = input('public')!.checked;
      if (creating) out.enabled = input('enabled')!.checked;

      const d = driver.value;
      const argv = (n: string) =>
        el
          .querySelector<HTMLTextAreaElement>(`[name="${n}"]`)!
          .value.split('\n')
          .map((l) => l.trim())
          .filter(Boolean);
      if (d === 'none') out.worker = null;
      else if (d === 'external') out.worker = { driver: 'external' };
      else if (d === 'process') {
        const cwd = input('worker.cwd')!.value.trim();
        // settings the form does not show (env) are kept
        const kept = worker?.driver === 'process' ? worker : {};
        out.worker = { ...kept, driver: 'process', command: argv('worker.command') };
        if (cwd) out.worker.cwd = cwd;
        else delete out.worker.cwd;
      } else {
        const kept = worker?.driver === 'kubernetes' ? worker : {};
        const k: Extract<WorkerSpec, { driver: 'kubernetes' }> = {
          ...kept,
          driver: 'kubernetes',
          image: input('worker.image')!.value.trim(),
        };
        const ns = input('worker.namespace')!.value.trim();
        const command = argv('worker.k8sCommand');
        if (ns) k.namespace = ns;
        else delete k.namespace;
        if (command.length) k.command = command;
        else delete k.command;
        out.worker = k;
      }

      const regions: NonNullable<ProjectInput['regions']> = {};
      for (const tr of Array.from(rows.querySelectorAll('tr'))) {
        const get = (n: string) => tr.querySelector<HTMLInputElement>(`[name="${n}"]`)!;
        const region = get('region').value.trim();
        const min = get('min').valueAsNumber;
        const max = get('max').valueAsNumber;
        if (!region || !Number.isFinite(min) || !Number.isFinite(max)) {
          ok = false;
          mark(tr, 'Each region needs a name, a number of warm workers and a maximum.');
          continue;
        }
        regions[region] = { min, max };
        if (get('defaultRegion').checked) out.defaultRegion = region;
      }
      out.regions = regions;

      if (!creating) {
        out.rooms = el.querySelector<HTMLSelectElement>('[name="rooms"]')!.value as Project['rooms'];
        out.agentTypes = input('agentTypes')!
          .value.split(',')
          .map((s) => s.trim())
          .filter(Boolean);
        out.reuseWorkers = input('reuseWorkers')!.checked;
        out.maxQueueLength = number('maxQueueLength');
        const timeouts: NonNullable<ProjectInput['timeouts']> = {};
        for (const [k] of [...TIMEOUTS, ...AFK_TIMEOUTS]) timeouts[k] = number(`timeouts.${k}`, 1000);
        out.timeouts = timeouts;
        out.afkEnabled = input('afkEnabled')!.checked;
        out.autoRestart = {
          enabled: input('autoRestart.enabled')!.checked,
          maxRestarts: number('autoRestart.maxRestarts'),
        };
      }
      if (!ok) {
        alert.textContent = 'Some fields need a value: see the marked ones.';
        alert.hidden = false;
        return null;
      }
      return out;
    },
  };
}
