import { createHash, randomUUID } from 'node:crypto';
import os from 'node:os';
import type { DevInstances } from '../backends/compute/index.ts';
import { networkStoreExamples, storeReach } from '../backends/storage/index.ts';
import type { Analysis } from '../models/analysis.ts';
import { CaasError } from '../models/caas-error.ts';
import type { DevInstance } from '../models/dev-instance.ts';
import { instanceTypeAllowed } from './prepare.ts';

/** A `caas dev` command cannot do what it was asked (no image, no instance, two of them, ...): exit 2. */
export class DevRefused extends CaasError {}

/** Whose development instances a command looks at, of which analysis, in the region of its blueprint. */
export interface DevTarget {
  api: DevInstances;
  analysis: Analysis;
  owner: string;
}

/** The owner tag of a developer's instances unless --owner says otherwise: their login name. */
export function defaultDevOwner(): string {
  try {
    return process.env.USER || os.userInfo().username;
  } catch {
    return 'unknown';
  }
}

/** "i-0abc (running, t3.micro, stops in 42 min at 2025-01-01T12:00:00Z)": a development instance in one line. */
export function describeDevInstance(instance: DevInstance, now = new Date()): string {
  return `${instance.id} (${instance.state}, ${instance.instance_type ?? 'unknown type'}, ${lifetimeText(instance, now)})`;
}

/** "stops in 42 min at …", "lifetime over since …". */
export function lifetimeText(instance: DevInstance, now = new Date()): string {
  if (!instance.expiry) return 'no caas:expiry tag';
  const ms = Date.parse(instance.expiry) - now.getTime();
  const at = instance.expiry.replace('.000Z', 'Z');
  return ms > 0 ? `stops in ${durationText(ms)} at ${at}` : `lifetime over since ${at}`;
}

/** 42 s, 17 min, 3 h 5 min. */
export function durationText(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  const minutes = Math.round(s / 60);
  if (minutes < 120) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/**
 * The development instance a command acts on: the one named by id (which must be a development
 * instance of this analysis), or else the only one of this analysis and owner; none, or several,
 * is refused with what to do.
 */
export async function chooseDevInstance(target: DevTarget, id: string | undefined): Promise<DevInstance> {
  const { api, analysis, owner } = target;
  const region = analysis.blueprint.region;
  if (id !== undefined) {
    const instance = await api.get(id);
    if (!instance) throw new DevRefused(`no instance ${id} in ${region} (the region of ${analysis.name}'s blueprint)`);
    if (instance.analysis === '') {
      throw new DevRefused(
        `${id} is not a caas development instance (it has no caas:dev tag): caas dev acts only on instances it launched`,
      );
    }
    if (instance.analysis !== analysis.name) {
      throw new DevRefused(`${id} is a development instance of ${instance.analysis}, not of ${analysis.name}`);
    }
    if (instance.state === 'terminated' || instance.state === 'shutting-down') {
      throw new DevRefused(`${id} is ${instance.state}: start a new one with caas dev launch ${analysis.name}`);
    }
    return instance;
  }
  const found = await api.list(analysis.name, owner);
  if (found.length === 0) {
    throw new DevRefused(
      `no development instance of ${analysis.name} for ${owner} in ${region}: start one with caas dev launch ${analysis.name}` +
        " (or name another owner's with --owner, or the instance by its id)",
    );
  }
  if (found.length > 1) {
    const now = new Date();
    throw new DevRefused(
      `${found.length} development instances of ${analysis.name} for ${owner}: ${found.map((i) => describeDevInstance(i, now)).join('; ')}. ` +
        `Name the one you mean: caas dev <command> ${analysis.name} ${found[0]!.id}`,
    );
  }
  return found[0]!;
}

export interface DevLaunchOptions {
  lifetimeMs: number;
  /** Default: the blueprint's instance_type; else one of its allowed_instance_types. */
  instanceType?: string;
  /** Default: the blueprint's ami. */
  ami?: string;
  keyName?: string;
  storeUrl: string;
  storeEnvironment?: Record<string, string>;
  now?: Date;
}

/**
 * Launches the development instance of an analysis for its owner, or finds the one already there:
 * a developer has one at a time (as NeuroCAAS's), so launching twice gives the same instance. The
 * request's ClientToken makes a retried RunInstances call return the instance it started.
 */
export async function launchDevInstance(
  target: DevTarget,
  options: DevLaunchOptions,
): Promise<{ instance: DevInstance; launched: boolean }> {
  const { api, analysis, owner } = target;
  const { blueprint } = analysis;
  const ami = options.ami ?? blueprint.ami;
  if (!ami) {
    throw new DevRefused(
      `the blueprint of ${analysis.name} names no "ami": add the image to develop from to ${analysis.dir}/blueprint.json, or pass --ami ami-… ` +
        '(caas dev save then writes the image you make there)',
    );
  }
  if (!/^ami-[0-9a-f]+$/.test(ami)) throw new DevRefused(`--ami "${ami}" is not an image id like ami-0123456789abcdef0`);
  const instanceType = options.instanceType ?? blueprint.instance_type;
  if (!instanceTypeAllowed(analysis, instanceType)) {
    const allowed = [...new Set([blueprint.instance_type, ...blueprint.allowed_instance_types])].join(', ');
    throw new DevRefused(
      `--instance-type ${instanceType} is not allowed for ${analysis.name}: use one of ${allowed}, or add it to allowed_instance_types in its blueprint`,
    );
  }
  refuseLocalStore(options.storeUrl);
  const existing = await api.list(analysis.name, owner);
  if (existing.length > 0) return { instance: existing[0]!, launched: false };
  const now = options.now ?? new Date();
  const instance = await api.launch({
    analysis: analysis.name,
    owner,
    blueprint,
    ami,
    instanceType,
    expiry: new Date(now.getTime() + options.lifetimeMs),
    keyName: options.keyName,
    storeUrl: options.storeUrl,
    storeEnvironment: options.storeEnvironment,
    clientToken: `caas-dev-${createHash('sha256').update(`${analysis.name}\0${owner}\0${randomUUID()}`).digest('hex').slice(0, 40)}`,
  });
  return { instance, launched: true };
}

/** A development instance reads its test jobs from the store: one on this machine is out of its reach. */
export function refuseLocalStore(storeUrl: string): void {
  if (storeReach(storeUrl) === 'network') return;
  throw new DevRefused(
    `caas dev needs --store ${networkStoreExamples()}: the development instance reads its test jobs from the store, and cannot read "${storeUrl}" on this machine`,
  );
}

/** Moves the instance's self-stop: `byMs` past its current expiry, or past now when that is over. */
export async function extendDevInstance(target: DevTarget, id: string | undefined, byMs: number, now = new Date()): Promise<DevInstance> {
  const instance = await chooseDevInstance(target, id);
  const from = Math.max(now.getTime(), instance.expiry ? Date.parse(instance.expiry) : 0);
  const expiry = new Date(from + byMs);
  await target.api.setExpiry(instance.id, expiry);
  return { ...instance, expiry: expiry.toISOString() };
}

/** Starts a stopped instance with a fresh lifetime (its boot script arms the self-stop again). */
export async function startDevInstance(
  target: DevTarget,
  id: string | undefined,
  lifetimeMs: number,
  now = new Date(),
): Promise<{ instance: DevInstance; started: boolean }> {
  const instance = await chooseDevInstance(target, id);
  if (instance.state === 'pending' || instance.state === 'running') return { instance, started: false };
  if (instance.state !== 'stopped') throw new DevRefused(`${instance.id} is ${instance.state}: start it once it has stopped`);
  // The tag first: a boot that read the old, past expiry would stop the instance again at once.
  const expiry = new Date(now.getTime() + lifetimeMs);
  await target.api.setExpiry(instance.id, expiry);
  await target.api.start(instance.id);
  return { instance: { ...instance, state: 'pending', expiry: expiry.toISOString() }, started: true };
}

export async function stopDevInstance(target: DevTarget, id: string | undefined): Promise<{ instance: DevInstance; stopped: boolean }> {
  const instance = await chooseDevInstance(target, id);
  if (instance.state === 'stopped' || instance.state === 'stopping') return { instance, stopped: false };
  await target.api.stop(instance.id);
  return { instance: { ...instance, state: 'stopping' }, stopped: true };
}

export async function terminateDevInstance(target: DevTarget, id: string | undefined): Promise<DevInstance> {
  const instance = await chooseDevInstance(target, id);
  await target.api.terminate(instance.id);
  return { ...instance, state: 'shutting-down' };
}
