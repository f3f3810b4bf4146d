/**
 * One poll of /gpuhub/api/v1/gpus shared by the status bar item and the GPU panel. Every 5 s while
 * the tab is visible; standby while it is hidden (Lumino's Poll 'when-hidden'); backs off on errors.
 * Keeps a short history per device for the panel's chart.
 */
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { fetchGpus, GpuSnapshot } from './api';

export const POLL_INTERVAL_MS = 5000;
export const HISTORY_LENGTH = 120; // ten minutes at 5 s

export interface Sample {
  t: number;
  used: number;
  total: number;
}

export class GpuModel {
  snapshot: GpuSnapshot | null = null;
  error = '';
  readonly history = new Map<string, Sample[]>();

  constructor(interval = POLL_INTERVAL_MS) {
    this.poll = new Poll({
      auto: true,
      factory: () => this.refresh(),
      frequency: { interval, backoff: true, max: 12 * interval },
      name: 'gpuhub:gpus',
      standby: 'when-hidden'
    });
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Read now (the panel opening, a click) rather than at the next tick. */
  refreshNow(): Promise<void> {
    return this.poll.refresh();
  }

  dispose(): void {
    this.poll.dispose();
  }

  private async refresh(): Promise<void> {
    try {
      this.snapshot = await fetchGpus();
      this.error = '';
      const now = Date.now();
      for (const gpu of this.snapshot.gpus) {
        const samples = this.history.get(gpu.uuid) ?? [];
        samples.push({ t: now, used: gpu.memory_used, total: gpu.memory_total });
        if (samples.length > HISTORY_LENGTH) {
          samples.splice(0, samples.length - HISTORY_LENGTH);
        }
        this.history.set(gpu.uuid, samples);
      }
    } catch (e) {
      this.error = e instanceof Error ? e.message : String(e);
      this._changed.emit();
      throw e; // the poll backs off
    }
    this._changed.emit();
  }

  private readonly poll: Poll;
  private readonly _changed = new Signal<this, void>(this);
}
