import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import type { CodeVersion, PreImage } from '../models/identity.ts';
import type { JobInputAsset } from '../models/job-input.ts';

/** RFC 8785 canonical JSON: the bytes every language hashes the same way. */
export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new Error('value cannot be canonicalized (undefined)');
  return text;
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** identity = sha256 hex of the RFC 8785 form of the pre-image. Pure: no clock, no host, no randomness. */
export function identityOf(preimage: PreImage): string {
  return sha256Hex(canonicalJson(preimage));
}

const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Inputs in a canonical order, so listing order in a catalog never changes an identity. */
export function canonicalInputs(inputs: readonly JobInputAsset[]): PreImage['inputs'] {
  return inputs
    .map((input) => ({
      asset_id: input.asset_id,
      name: input.name,
      location: input.location,
      ...(input.files
        ? {
            files: input.files
              .map((f) => ({ url: f.url, ...(f.etag !== undefined && { etag: f.etag }), ...(f.size !== undefined && { size: f.size }) }))
              .sort((a, b) => compare(a.url, b.url)),
          }
        : {}),
    }))
    .sort(
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
  inputs: readonly JobInputAsset[];
  output: string;
}

export function buildPreImage(parts: PreImageParts): PreImage {
  return {
    v: 1,
    analysis: { name: parts.analysis.name, version: parts.analysis.version },
    code: { url: parts.code.url, commit: parts.code.commit, ...(parts.code.dirty ? { dirty: parts.code.dirty } : {}) },
    // A JSON round trip drops undefined values, so what is hashed is exactly what is stored.
    parameters: JSON.parse(JSON.stringify(parts.parameters)) as Record<string, unknown>,
    inputs: canonicalInputs(parts.inputs),
    output: parts.output,
  };
}
