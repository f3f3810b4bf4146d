/**
 * The gpuhub server extension's REST API (gpuhub.singleuser.app), typed.
 *
 *   GET  /gpuhub/api/v1/gpus       this server's GPUs, processes and container limits
 *   POST /gpuhub/api/v1/envcheck   run the environment check and return its report
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface GpuProcess {
  pid: number;
  memory_used: number | null;
  kernel_id: string | null;
  notebook: string | null;
}

export interface Gpu {
  uuid: string;
  name: string;
  memory_used: number;
  memory_total: number;
  utilization: number | null;
  temperature: number | null;
  processes: GpuProcess[];
}

export interface Limits {
  cgroup: string;
  memory_limit: number | null;
  memory_used: number | null;
  cpu_limit: number | null;
}

export type GpuState = 'ok' | 'no-gpu' | 'unavailable';

export interface GpuSnapshot {
  state: GpuState;
  message?: string;
  mode?: string;
  exposure?: string;
  simulated?: boolean;
  memory_budget?: number | null;
  /** Beyond the user's GPU quota: stopped (after a warning) when someone within quota needs the GPU. */
  borrowed?: boolean;
  assigned?: string[];
  gpus: Gpu[];
  limits?: Limits;
  /** From the hub: e.g. the weekly GPU-hours running out (warn), or used up (stop). */
  notices?: Notice[];
}

export interface Notice {
  level: 'warn' | 'stop';
  message: string;
  since: string | null;
}

export type CheckStatus = 'pass' | 'warn' | 'fail' | 'skip';

export interface Check {
  id: string;
  title: string;
  status: CheckStatus;
  value: string;
  expected: string;
  hint: string;
}

export interface EnvReport {
  schema: number;
  generated: string;
  duration_s: number;
  summary: Record<CheckStatus, number>;
  checks: Check[];
}

/** An API error with the server's own message (tornado's "message" or "reason"). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
  }
}

async function request<T>(path: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'gpuhub/api/v1', path);
  const response = await ServerConnection.makeRequest(url, init, settings);
  const text = await response.text();
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = JSON.parse(text);
      message = body.message || body.reason || message;
    } catch {
      // not JSON: keep the status line
    }
    throw new ApiError(response.status, message);
  }
  return JSON.parse(text) as T;
}

export function fetchGpus(): Promise<GpuSnapshot> {
  return request<GpuSnapshot>('gpus');
}

export function runEnvCheck(slow = false): Promise<EnvReport> {
  return request<EnvReport>(`envcheck${slow ? '?slow=true' : ''}`, { method: 'POST' });
}
