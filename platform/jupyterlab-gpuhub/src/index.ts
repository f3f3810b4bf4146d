/**
 * gpuhub in JupyterLab:
 * - a status bar item with this server's GPU memory ("GPU 3.1 / 80 GB", "no GPU"), coloured near the limit;
 * - the GPU panel in the right sidebar: a live memory chart per device, the processes, the limits;
 * - "Check GPU environment" in the command palette and the launcher: the report as a table, copyable.
 * It talks to gpuhub's server extension (/gpuhub/api/v1/...), enabled in the gpuhub images.
 */
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget } from '@jupyterlab/apputils';
import { ILauncher } from '@jupyterlab/launcher';
import { IStatusBar } from '@jupyterlab/statusbar';

import { EnvCheckView } from './envcheck';
import { gpuIcon } from './icon';
import { GpuModel } from './model';
import { GpuPanel } from './panel';
import { GpuStatusItem } from './statusbar';

export const CommandIds = {
  checkEnvironment: 'gpuhub:check-environment',
  showPanel: 'gpuhub:show-gpu-panel'
} as const;

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@gpuhub/jupyterlab-gpuhub:plugin',
  description: 'GPU memory in the status bar, the GPU panel and the one-click GPU environment check',
  autoStart: true,
  requires: [ILabShell],
  optional: [IStatusBar, ICommandPalette, ILauncher],
  activate: (
    app: JupyterFrontEnd,
    shell: ILabShell,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null,
    launcher: ILauncher | null
  ) => {
    const model = new GpuModel();
    const panel = new GpuPanel(model);
    panel.title.icon = gpuIcon;
    shell.add(panel, 'right', { rank: 600 });

    app.commands.addCommand(CommandIds.showPanel, {
      label: 'Show GPU panel',
      caption: 'GPU memory and processes of this server',
      icon: gpuIcon,
      execute: () => shell.activateById(panel.id)
    });

    let report: MainAreaWidget<EnvCheckView> | null = null;
    app.commands.addCommand(CommandIds.checkEnvironment, {
      label: 'Check GPU environment',
      caption: 'Check driver, CUDA, PyTorch, cuDNN, NCCL, a matmul, shm and limits in this server',
      icon: gpuIcon,
      execute: async () => {
        if (!report || report.isDisposed) {
          report = new MainAreaWidget({ content: new EnvCheckView() });
          report.id = 'gpuhub-envcheck';
          report.title.label = 'GPU environment check';
          report.title.icon = gpuIcon;
          report.title.closable = true;
        }
        if (!report.isAttached) {
          shell.add(report, 'main');
        }
        shell.activateById(report.id);
        await report.content.run();
      }
    });

    palette?.addItem({ command: CommandIds.checkEnvironment, category: 'GPU' });
    palette?.addItem({ command: CommandIds.showPanel, category: 'GPU' });
    launcher?.add({ command: CommandIds.checkEnvironment, category: 'Other', rank: 10 });

    statusBar?.registerStatusItem('gpuhub:gpu-memory', {
      item: new GpuStatusItem(model, () => void app.commands.execute(CommandIds.showPanel)),
      align: 'left',
      rank: 3
    });
  }
};

export default plugin;
