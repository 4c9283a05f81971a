import { hash } from 'node:crypto';
import canonicalize from 'canonicalize';
import type { CodeVersion, PreImage } from '../models/identity.ts';
import type { JobInputAsset } from '../models/job-input.ts';

/**
 * RFC 8785 canonical JSON: the bytes every language hashes the same way. Plain JSON data whose
 * object keys are already in code-unit order serialises to exactly those bytes with the native
 * JSON.stringify (RFC 8785 adopts ECMAScript's number and string forms), which is 2x faster than
 * the general algorithm; buildPreImage builds pre-images in that order so identities take the
 * fast path. Anything else goes through the `canonicalize` reference implementation.
 */
export function canonicalJson(value: unknown): string {
  if (inCanonicalOrder(value, 0)) {
    const text = JSON.stringify(value);
    // JSON.stringify escapes a lone surrogate as \udXXX, where RFC 8785 refuses the value; the
    // general algorithm decides whenever such an escape may be in the text.
    if (!text.includes('\\ud')) return text;
  }
  const text = canonicalize(value);
  if (text === undefined) throw new Error('value cannot be canonicalized (undefined)');
  return text;
}

const MAX_DEPTH = 256;

/**
 * True when JSON.stringify(value) is already its RFC 8785 form (lone surrogates aside, see above):
 * only plain objects, arrays, strings, finite numbers, booleans and null; no undefined to drop; every object's keys
 * strictly ascending by UTF-16 code units (V8 lists integer-like keys first, which this rejects).
 */
function inCanonicalOrder(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
      return true;
    case 'number':
      return Number.isFinite(value);
    case 'boolean':
      return true;
    case 'object': {
      if (value === null) return true;
      if (depth > MAX_DEPTH) return false;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) if (value[i] === undefined || !inCanonicalOrder(value[i], depth + 1)) return false;
        return true;
      }
      if (Object.getPrototypeOf(value) !== Object.prototype) return false;
      let previous: string | undefined;
      for (const key in value) {
        if (previous !== undefined && !(previous < key)) return false;
        const item = (value as Record<string, unknown>)[key];
        if (item === undefined || !inCanonicalOrder(item, depth + 1)) return false;
        previous = key;
      }
      return true;
    }
    default:
      return false;
  }
}

export function sha256Hex(data: string | Uint8Array): string {
  return hash('sha256', data, 'hex');
}

/** identity = sha256 hex of the RFC 8785 form of the pre-image. Pure: no clock, no host, no randomness. */
export function identityOf(preimage: PreImage): string {
  return sha256Hex(canonicalJson(preimage));
}

/** One object of a folder input as listed when its job was prepared: it enters the pre-image. */
export interface FolderFile {
  url: string;
  etag: string;
  size: number;
}

const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Inputs in a canonical order, so listing order in a catalog never changes an identity. Keys are
 * written in code-unit order (as everywhere in a pre-image) so canonicalJson takes its fast path.
 */
export function canonicalInputs(inputs: readonly (JobInputAsset & { listing?: FolderFile[] })[]): PreImage['inputs'] {
  const assets = inputs.map((input) => {
    const asset = { asset_id: input.asset_id } as PreImage['inputs'][number];
    if (input.files) {
      asset.files = input.files
        .map((f) => {
          const file: { etag?: string; size?: number; url: string } = {} as { url: string };
          if (f.etag !== undefined) file.etag = f.etag;
          if (f.size !== undefined) file.size = f.size;
          file.url = f.url;
          return file;
        })
        .sort((a, b) => compare(a.url, b.url));
    }
    if (input.listing)
      asset.listing = input.listing.map((f) => ({ etag: f.etag, size: f.size, url: f.url })).sort((a, b) => compare(a.url, b.url));
    asset.location = input.location;
    asset.name = input.name;
    return asset;
  });
  return assets.sort(
    (a, b) =>
      compare(a.asset_id, b.asset_id) ||
      compare(a.location, b.location) ||
      compare(canonicalJson(a.files ?? []), canonicalJson(b.files ?? [])),
  );
}

export interface PreImageParts {
  analysis: { name: string; version: string };
  code: CodeVersion;
  /** Already parsed by the analysis parameter model (defaults applied, unknown keys rejected). */
  parameters: Record<string, unknown>;
  inputs: readonly (JobInputAsset & { listing?: FolderFile[] })[];
  output: string;
}

export function buildPreImage(parts: PreImageParts): PreImage {
  return {
    analysis: { name: parts.analysis.name, version: parts.analysis.version },
    code: { commit: parts.code.commit, ...(parts.code.dirty ? { dirty: parts.code.dirty } : {}), url: parts.code.url },
    inputs: canonicalInputs(parts.inputs),
    output: parts.output,
    // Through canonical JSON and back: undefined values drop out, so what is hashed is exactly what
    // is stored, and the keys come back in canonical order.
    parameters: JSON.parse(canonicalJson(parts.parameters)) as Record<string, unknown>,
    v: 1,
  };
}
