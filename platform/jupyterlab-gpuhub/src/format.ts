/**
 * Pure formatting: what the status bar, the panel and the report say. No DOM, no server; tested by
 * format.test.ts with node's test runner.
 */
import type { Check, EnvReport, GpuSnapshot } from './api';

const GiB = 1024 ** 3;

/** Fractions of the limit at which the status bar turns amber and red. */
export const WARN_AT = 0.8;
export const CRITICAL_AT = 0.95;

export type Level = 'ok' | 'warn' | 'critical' | 'none';

/** Bytes as "3.1" GB (1024-based, as JupyterLab's resource-usage display counts); totals of 10 GB
 * and more without decimals ("80"). */
export function gigabytes(bytes: number, total = false): string {
  const value = bytes / GiB;
  if (total && value >= 10) {
    return value.toFixed(0);
  }
  return value.toFixed(1);
}

export function mebibytes(bytes: number): string {
  return `${Math.round(bytes / 1024 ** 2).toLocaleString('en-US')} MiB`;
}

export interface MemoryFigure {
  used: number;
  limit: number;
  /** 'budget': a shared GPU's memory budget; 'device': the devices' whole memory */
  of: 'budget' | 'device';
}

/** This server's GPU memory against its limit: a shared GPU's budget, else the devices' memory. */
export function memoryFigure(snapshot: GpuSnapshot): MemoryFigure | null {
  if (snapshot.state !== 'ok' || snapshot.gpus.length === 0) {
    return null;
  }
  if (snapshot.memory_budget) {
    // On a shared GPU the device's figure includes other users; this server's own processes count.
    const own = snapshot.gpus
      .flatMap(g => g.processes)
      .reduce((sum, p) => sum + (p.memory_used ?? 0), 0);
    return { used: own, limit: snapshot.memory_budget, of: 'budget' };
  }
  const used = snapshot.gpus.reduce((sum, g) => sum + g.memory_used, 0);
  const limit = snapshot.gpus.reduce((sum, g) => sum + g.memory_total, 0);
  return { used, limit, of: 'device' };
}

export function level(figure: MemoryFigure | null): Level {
  if (!figure || figure.limit <= 0) {
    return 'none';
  }
  const share = figure.used / figure.limit;
  return share >= CRITICAL_AT ? 'critical' : share >= WARN_AT ? 'warn' : 'ok';
}

/** The status bar's text: "GPU 3.1 / 80 GB", "no GPU", "GPU n/a"; "⚠ " first when the hub has a notice. */
export function statusText(snapshot: GpuSnapshot | null): string {
  if (!snapshot) {
    return 'GPU …';
  }
  if (snapshot.notices?.length) {
    return `⚠ ${statusText({ ...snapshot, notices: [] })}`;
  }
  if (snapshot.state === 'no-gpu') {
    return 'no GPU';
  }
  const figure = memoryFigure(snapshot);
  const borrowed = snapshot.borrowed ? ' · borrowed' : '';
  if (!figure) {
    return `GPU n/a${borrowed}`;
  }
  return `GPU ${gigabytes(figure.used)} / ${gigabytes(figure.limit, true)} GB${borrowed}`;
}

/** What a borrowed GPU means, for the tooltip and the panel. */
export const BORROWED_TEXT =
  'Borrowed GPU: beyond your GPU quota, lent while nobody waited for it. When someone within their quota needs it, ' +
  'you get a warning here, then this server is stopped (your files are kept).';

/** The status bar's tooltip: each device in full, or why there are no figures. */
export function statusTitle(snapshot: GpuSnapshot | null, error?: string): string {
  if (error) {
    return `GPU figures could not be read: ${error}`;
  }
  if (!snapshot) {
    return 'Reading GPU figures…';
  }
  if (snapshot.notices?.length) {
    const rest = statusTitle({ ...snapshot, notices: [] });
    return [...snapshot.notices.map(n => n.message), rest].join('\n');
  }
  if (snapshot.borrowed) {
    return [BORROWED_TEXT, statusTitle({ ...snapshot, borrowed: false })].join('\n');
  }
  if (snapshot.state !== 'ok') {
    const assigned = snapshot.assigned?.length ? `\nassigned: ${snapshot.assigned.join(', ')}` : '';
    return `${snapshot.message ?? snapshot.state}${assigned}`;
  }
  const lines = snapshot.gpus.map(
    g => `${g.name} (${g.uuid}): ${mebibytes(g.memory_used)} of ${mebibytes(g.memory_total)} used`
  );
  if (snapshot.memory_budget) {
    lines.push(`shared GPU: this server's budget is ${mebibytes(snapshot.memory_budget)}`);
  }
  if (snapshot.simulated) {
    lines.push('SIMULATED inventory: these are not real GPUs');
  }
  lines.push('Click for the GPU panel');
  return lines.join('\n');
}

const MARK: Record<string, string> = { pass: 'PASS', warn: 'WARN', fail: 'FAIL', skip: 'SKIP' };

export function checkLine(check: Check): string {
  let line = `[${MARK[check.status] ?? check.status}] ${check.title}`;
  if (check.value) {
    line += `: ${check.value}`;
  }
  if (check.expected) {
    line += ` (expected ${check.expected})`;
  }
  if (check.hint) {
    line += `\n       ${check.hint}`;
  }
  return line;
}

export function summaryText(report: EnvReport): string {
  const s = report.summary;
  return `${s.pass} passed, ${s.warn} warnings, ${s.fail} failed, ${s.skip} skipped`;
}

/** The report as plain text for a support ticket. */
export function reportText(report: EnvReport, where = ''): string {
  return [
    `gpuhub environment check${where ? ` — ${where}` : ''}`,
    `generated ${report.generated} in ${report.duration_s.toFixed(1)} s (report schema ${report.schema})`,
    summaryText(report),
    '',
    ...report.checks.map(checkLine)
  ].join('\n');
}
