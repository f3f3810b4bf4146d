/**
 * The GPU panel (right sidebar): per device a live memory chart and figures, the processes using it
 * (with the notebook where the process is a kernel), and the container's memory and CPU limits.
 */
import { Widget } from '@lumino/widgets';

import type { Gpu, GpuSnapshot, Limits } from './api';
import { h, svg } from './dom';
import { BORROWED_TEXT, gigabytes, level, mebibytes, memoryFigure } from './format';
import { GpuModel, HISTORY_LENGTH, Sample } from './model';

const CHART_W = 240;
const CHART_H = 60;

export class GpuPanel extends Widget {
  constructor(private readonly model: GpuModel) {
    super();
    this.id = 'gpuhub-gpu-panel';
    this.addClass('gpuhub-GpuPanel');
    this.title.caption = 'GPU memory and processes';
    model.changed.connect(this.render, this);
    this.render();
  }

  protected onAfterShow(): void {
    void this.model.refreshNow().catch(() => undefined);
    this.render();
  }

  render(): void {
    if (!this.isVisible && this.node.childElementCount) {
      return; // drawn again when shown
    }
    const snapshot = this.model.snapshot;
    this.node.replaceChildren(
      h('h2', { className: 'gpuhub-GpuPanel-title', text: 'GPU' }),
      ...this.body(snapshot),
      ...(snapshot?.limits ? [limitsView(snapshot.limits)] : [])
    );
  }

  private body(snapshot: GpuSnapshot | null): HTMLElement[] {
    if (this.model.error) {
      return [h('p', { className: 'gpuhub-GpuPanel-message', text: `GPU figures could not be read: ${this.model.error}` })];
    }
    if (!snapshot) {
      return [h('p', { className: 'gpuhub-GpuPanel-message', text: 'Reading GPU figures…' })];
    }
    if (snapshot.state !== 'ok') {
      return [
        h('p', { className: 'gpuhub-GpuPanel-message', data: { gpuhubState: snapshot.state }, text: snapshot.message ?? snapshot.state }),
        ...(snapshot.assigned?.length ? [h('p', { className: 'gpuhub-GpuPanel-note', text: `Assigned: ${snapshot.assigned.join(', ')}` })] : []),
        ...(snapshot.borrowed ? [h('p', { className: 'gpuhub-GpuPanel-note gpuhub-GpuPanel-borrowed', text: BORROWED_TEXT })] : [])
      ];
    }
    const views = snapshot.gpus.map(gpu => this.deviceView(gpu));
    const figure = memoryFigure(snapshot);
    if (figure?.of === 'budget') {
      views.unshift(
        h('p', {
          className: 'gpuhub-GpuPanel-note',
          text: `Shared GPU: your processes use ${gigabytes(figure.used)} of your ${gigabytes(figure.limit, true)} GB budget.`
        })
      );
    }
    if (snapshot.borrowed) {
      views.unshift(h('p', { className: 'gpuhub-GpuPanel-note gpuhub-GpuPanel-borrowed', text: BORROWED_TEXT }));
    }
    if (snapshot.simulated) {
      views.unshift(h('p', { className: 'gpuhub-GpuPanel-note', text: 'SIMULATED inventory: these are not real GPUs.' }));
    }
    return views;
  }

  private deviceView(gpu: Gpu): HTMLElement {
    const figure = { used: gpu.memory_used, limit: gpu.memory_total, of: 'device' as const };
    const facts = [
      `${mebibytes(gpu.memory_used)} / ${mebibytes(gpu.memory_total)}`,
      gpu.utilization === null ? null : `${gpu.utilization} % busy`,
      gpu.temperature === null ? null : `${gpu.temperature} °C`
    ].filter(Boolean);
    const rows = gpu.processes.map(p =>
      h(
        'tr',
        {},
        h('td', { text: String(p.pid) }),
        h('td', { text: p.notebook ?? (p.kernel_id ? `kernel ${p.kernel_id.slice(0, 8)}` : '—') }),
        h('td', { text: p.memory_used === null ? 'n/a' : mebibytes(p.memory_used) })
      )
    );
    return h(
      'section',
      { className: 'gpuhub-GpuDevice', data: { uuid: gpu.uuid, gpuhubLevel: level(figure) } },
      h('h3', { text: gpu.name, title: gpu.uuid }),
      memoryChart(this.model.history.get(gpu.uuid) ?? []),
      h('p', { className: 'gpuhub-GpuDevice-facts', text: facts.join(' · ') }),
      rows.length
        ? h(
            'table',
            { className: 'gpuhub-ProcessTable' },
            h('thead', {}, h('tr', {}, h('th', { text: 'PID' }), h('th', { text: 'Notebook' }), h('th', { text: 'GPU memory' }))),
            h('tbody', {}, ...rows)
          )
        : h('p', { className: 'gpuhub-GpuPanel-note', text: 'No process of yours is using this GPU.' })
    );
  }

  dispose(): void {
    this.model.changed.disconnect(this.render, this);
    super.dispose();
  }
}

/** Memory used over the last samples, as a filled SVG line on a 0..total scale. */
function memoryChart(samples: Sample[]): HTMLElement {
  const chart = svg('svg', { viewBox: `0 0 ${CHART_W} ${CHART_H}`, class: 'gpuhub-MemoryChart', role: 'img' });
  const total = samples.length ? samples[samples.length - 1].total : 0;
  if (samples.length && total > 0) {
    const step = CHART_W / (HISTORY_LENGTH - 1);
    const x0 = CHART_W - (samples.length - 1) * step;
    const points = samples.map((s, i) => `${(x0 + i * step).toFixed(1)},${(CHART_H - (s.used / total) * CHART_H).toFixed(1)}`);
    chart.append(
      svg('polygon', { points: `${x0.toFixed(1)},${CHART_H} ${points.join(' ')} ${CHART_W},${CHART_H}`, class: 'gpuhub-MemoryChart-area' }),
      svg('polyline', { points: points.join(' '), class: 'gpuhub-MemoryChart-line' })
    );
  }
  chart.setAttribute('aria-label', 'GPU memory used, last ten minutes');
  return h('div', { className: 'gpuhub-MemoryChart-frame' }, chart);
}

function limitsView(limits: Limits): HTMLElement {
  const memory = limits.memory_limit
    ? `${gigabytes(limits.memory_used ?? 0)} of ${gigabytes(limits.memory_limit)} GB`
    : `no limit${limits.memory_used ? ` (${gigabytes(limits.memory_used)} GB used)` : ''}`;
  const cpu = limits.cpu_limit ? `${limits.cpu_limit} CPUs` : 'no limit';
  return h(
    'section',
    { className: 'gpuhub-Limits' },
    h('h3', { text: 'This server' }),
    h('p', { text: `Memory: ${memory}` }),
    h('p', { text: `CPU: ${cpu} (cgroup ${limits.cgroup})` })
  );
}
