// The status bar's and the report's words, on the compiled lib/format.js: node --test test/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { level, memoryFigure, reportText, statusText, statusTitle } from '../lib/format.js';

const GiB = 1024 ** 3;
const gpu = (used, total, processes = []) => ({
  uuid: 'GPU-1', name: 'NVIDIA H100 80GB HBM3', memory_used: used, memory_total: total,
  utilization: 3, temperature: 40, processes
});

const cases = [
  // [what, snapshot, status text, level]
  ['not read yet', null, 'GPU …', 'none'],
  ['CPU-only server', { state: 'no-gpu', message: 'no GPU assigned to this server', gpus: [] }, 'no GPU', 'none'],
  ['assigned but unreadable', { state: 'unavailable', message: 'GPU figures unavailable: env-only', gpus: [] }, 'GPU n/a', 'none'],
  ['one H100, little used', { state: 'ok', gpus: [gpu(3.1 * GiB, 79.6 * GiB)] }, 'GPU 3.1 / 80 GB', 'ok'],
  ['at 80 %', { state: 'ok', gpus: [gpu(64 * GiB, 80 * GiB)] }, 'GPU 64.0 / 80 GB', 'warn'],
  ['at 96 %', { state: 'ok', gpus: [gpu(76.8 * GiB, 80 * GiB)] }, 'GPU 76.8 / 80 GB', 'critical'],
  ['two GPUs add up', { state: 'ok', gpus: [gpu(1 * GiB, 80 * GiB), gpu(2 * GiB, 80 * GiB)] }, 'GPU 3.0 / 160 GB', 'ok'],
  ['small MIG slice keeps a decimal', { state: 'ok', gpus: [gpu(0.5 * GiB, 9.5 * GiB)] }, 'GPU 0.5 / 9.5 GB', 'ok'],
  [
    'shared GPU: own processes against the budget, not the device',
    { state: 'ok', memory_budget: 20 * GiB, gpus: [gpu(70 * GiB, 80 * GiB, [{ pid: 7, memory_used: 17 * GiB }])] },
    'GPU 17.0 / 20 GB',
    'warn'
  ]
];

for (const [what, snapshot, text, lvl] of cases) {
  test(`status: ${what}`, () => {
    assert.equal(statusText(snapshot), text);
    assert.equal(level(snapshot ? memoryFigure(snapshot) : null), lvl);
  });
}

test('tooltip says why there are no figures, and marks a simulated inventory', () => {
  assert.match(statusTitle({ state: 'unavailable', message: 'GPU figures unavailable: env-only', assigned: ['GPU-1'], gpus: [] }), /env-only\nassigned: GPU-1/);
  assert.match(statusTitle({ state: 'ok', simulated: true, gpus: [gpu(0, GiB)] }), /SIMULATED/);
  assert.match(statusTitle(null, 'Forbidden'), /could not be read: Forbidden/);
  // a notice from the hub (weekly GPU-hours) comes first, in the text and the tooltip
  const noticed = { state: 'ok', gpus: [gpu(GiB, 80 * GiB)], notices: [{ level: 'warn', message: 'Weekly GPU-hours run out in about 10 minutes', since: null }] };
  assert.match(statusText(noticed), /^⚠ GPU 1\.0 \/ 80 GB$/);
  assert.match(statusTitle(noticed), /^Weekly GPU-hours run out in about 10 minutes\n.*of 81,920 MiB used/);
});

test('a borrowed GPU is marked in the text and explained in the tooltip', () => {
  const borrowed = { state: 'ok', borrowed: true, gpus: [gpu(GiB, 80 * GiB)] };
  assert.equal(statusText(borrowed), 'GPU 1.0 / 80 GB · borrowed');
  assert.equal(statusText({ state: 'unavailable', borrowed: true, gpus: [] }), 'GPU n/a · borrowed');
  assert.match(statusTitle(borrowed), /^Borrowed GPU: beyond your GPU quota.*files are kept\)\.\n.*of 81,920 MiB used/);
  assert.equal(statusText({ ...borrowed, borrowed: false }), 'GPU 1.0 / 80 GB');
});

test('report as text: one line per check, expected and hint kept', () => {
  const report = {
    schema: 1, generated: '2026-11-21T10:00:00+00:00', duration_s: 2.345,
    summary: { pass: 1, warn: 0, fail: 0, skip: 1 },
    checks: [
      { id: 'non-root', title: 'Running as a non-root user', status: 'pass', value: 'uid 1000', expected: 'uid != 0', hint: '' },
      { id: 'cuda', title: 'torch.cuda.is_available()', status: 'skip', value: 'False', expected: 'True', hint: 'no GPU assigned' }
    ]
  };
  assert.equal(
    reportText(report, 'ada at hub.example.org'),
    [
      'gpuhub environment check — ada at hub.example.org',
      'generated 2026-11-21T10:00:00+00:00 in 2.3 s (report schema 1)',
      '1 passed, 0 warnings, 0 failed, 1 skipped',
      '',
      '[PASS] Running as a non-root user: uid 1000 (expected uid != 0)',
      '[SKIP] torch.cuda.is_available(): False (expected True)\n       no GPU assigned'
    ].join('\n')
  );
});
