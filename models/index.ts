import type { z } from 'zod';
import { AgentSpec } from './agent-spec.ts';
import { Blueprint } from './blueprint.ts';
import { DevInstance } from './dev-instance.ts';
import { PreImage } from './identity.ts';
import { JobInput } from './job-input.ts';
import { MetadataRecord } from './record.ts';
import { StatusFile } from './status.ts';
import { SubmitFile } from './submit.ts';

/** The public contracts by the names `caas schema <name>` accepts. */
export const namedModels: Record<string, z.ZodType> = {
  'job-input': JobInput,
  record: MetadataRecord,
  preimage: PreImage,
  submit: SubmitFile,
  status: StatusFile,
  blueprint: Blueprint,
  'agent-spec': AgentSpec,
  'dev-instance': DevInstance,
};
