/**
 * The "Check GPU environment" report: runs the server's check (POST /gpuhub/api/v1/envcheck) and
 * shows each check as a table row (status, check, measured, expected, hint), with "Run again" and
 * "Copy as text" for a support ticket.
 */
import { Clipboard } from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { Widget } from '@lumino/widgets';

import { EnvReport, runEnvCheck } from './api';
import { h } from './dom';
import { reportText, summaryText } from './format';

export class EnvCheckView extends Widget {
  report: EnvReport | null = null;

  constructor() {
    super();
    this.addClass('gpuhub-EnvCheck');
    this.runButton = h('button', { className: 'jp-mod-styled jp-mod-accept gpuhub-EnvCheck-run', text: 'Run again' });
    this.copyButton = h('button', { className: 'jp-mod-styled gpuhub-EnvCheck-copy', text: 'Copy as text' });
    this.slowBox = h('input');
    this.slowBox.type = 'checkbox';
    this.slowBox.className = 'gpuhub-EnvCheck-slow';
    this.status = h('p', { className: 'gpuhub-EnvCheck-status' });
    this.table = h('div', { className: 'gpuhub-EnvCheck-body' });
    this.runButton.addEventListener('click', () => void this.run());
    this.copyButton.addEventListener('click', () => void this.copy());
    this.node.append(
      h(
        'div',
        { className: 'gpuhub-EnvCheck-toolbar' },
        this.runButton,
        this.copyButton,
        h('label', { className: 'gpuhub-EnvCheck-slowLabel', title: 'also runs a torch.compile smoke test (slow)' }, this.slowBox, ' include torch.compile (slow)')
      ),
      this.status,
      this.table
    );
    this.copyButton.disabled = true;
  }

  /** Run the check on the server and show its report. */
  async run(): Promise<void> {
    this.runButton.disabled = true;
    this.copyButton.disabled = true;
    this.node.dataset.gpuhubRunning = 'true';
    this.status.textContent = 'Running the environment check in your server…';
    try {
      this.report = await runEnvCheck(this.slowBox.checked);
      this.render();
    } catch (e) {
      this.status.textContent = `The environment check could not run: ${e instanceof Error ? e.message : String(e)}`;
      this.status.dataset.gpuhubError = 'true';
    } finally {
      this.runButton.disabled = false;
      delete this.node.dataset.gpuhubRunning;
    }
  }

  /** The report as text, for a support ticket: names the user and server it came from. */
  text(): string {
    if (!this.report) {
      return '';
    }
    const user = PageConfig.getOption('hubUser');
    const server = PageConfig.getOption('hubServerName');
    const where = user ? `${user}${server ? `:${server}` : ''} at ${window.location.host}` : window.location.host;
    return reportText(this.report, where);
  }

  private async copy(): Promise<void> {
    const text = this.text();
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      Clipboard.copyToSystem(text); // a page without the async clipboard (plain http on a remote host)
    }
    this.copyButton.textContent = 'Copied';
    window.setTimeout(() => (this.copyButton.textContent = 'Copy as text'), 2000);
  }

  private render(): void {
    const report = this.report;
    if (!report) {
      return;
    }
    delete this.status.dataset.gpuhubError;
    this.status.textContent = `${summaryText(report)} · ${new Date(report.generated).toLocaleString()} · ${report.duration_s.toFixed(1)} s`;
    const rows = report.checks.map(c =>
      h(
        'tr',
        { data: { check: c.id, status: c.status } },
        h('td', {}, h('span', { className: `gpuhub-Badge gpuhub-Badge--${c.status}`, text: c.status })),
        h('td', { text: c.title }),
        h('td', { text: c.value }),
        h('td', { text: c.expected }),
        h('td', { className: 'gpuhub-EnvCheck-hint', text: c.hint })
      )
    );
    this.table.replaceChildren(
      h(
        'table',
        { className: 'gpuhub-EnvCheck-table' },
        h(
          'thead',
          {},
          h('tr', {}, ...['Status', 'Check', 'Measured', 'Expected', 'Hint'].map(t => h('th', { text: t })))
        ),
        h('tbody', {}, ...rows)
      )
    );
    this.copyButton.disabled = false;
  }

  private readonly runButton: HTMLButtonElement;
  private readonly copyButton: HTMLButtonElement;
  private readonly slowBox: HTMLInputElement;
  private readonly status: HTMLParagraphElement;
  private readonly table: HTMLDivElement;
}
