import type { z } from 'zod';
import { AgentSpec } from './agent-spec.ts';
import { AindDispatchModel } from './aind-dispatch.ts';
import { Blueprint } from './blueprint.ts';
import { DevInstance } from './dev-instance.ts';
import { PreImage } from './identity.ts';
import { JobDocument } from './job-document.ts';
import { JobInput } from './job-input.ts';
import { NeuroCaasBlueprint } from './neurocaas-blueprint.ts';
import { MetadataRecord } from './record.ts';
import { StatusFile } from './status.ts';
import { SubmitFile } from './submit.ts';

/** The public contracts by the names `caas schema <name>` accepts. */
export const namedModels: Record<string, z.ZodType> = {
  'job-input': JobInput,
  'aind-dispatch-model': AindDispatchModel,
  record: MetadataRecord,
  preimage: PreImage,
  submit: SubmitFile,
  status: StatusFile,
  blueprint: Blueprint,
  'agent-spec': AgentSpec,
  job: JobDocument,
  'neurocaas-blueprint': NeuroCaasBlueprint,
  'dev-instance': DevInstance,
};
