/** The status bar item: "GPU 3.1 / 80 GB" (amber from 80 %, red from 95 %), "no GPU", "GPU n/a". */
import { Widget } from '@lumino/widgets';

import { level, memoryFigure, statusText, statusTitle } from './format';
import { GpuModel } from './model';

export class GpuStatusItem extends Widget {
  constructor(
    private readonly model: GpuModel,
    onClick: () => void
  ) {
    super();
    this.addClass('gpuhub-GpuStatus');
    this.node.setAttribute('role', 'button');
    this.node.dataset.gpuhubState = 'loading';
    this.node.addEventListener('click', onClick);
    model.changed.connect(this.render, this);
    this.render();
  }

  render(): void {
    const snapshot = this.model.snapshot;
    const figure = snapshot ? memoryFigure(snapshot) : null;
    this.node.textContent = this.model.error && !snapshot ? 'GPU ?' : statusText(snapshot);
    this.node.title = statusTitle(snapshot, this.model.error);
    this.node.dataset.gpuhubState = snapshot?.state ?? 'loading';
    this.node.dataset.gpuhubLevel = snapshot?.notices?.length ? 'critical' : level(figure);
  }

  dispose(): void {
    this.model.changed.disconnect(this.render, this);
    super.dispose();
  }
}
