import type { AindMetadataDocument, AindProcessing } from '../models/aind-processing.ts';
import type { PreparedJob } from './prepare.ts';
import type { Verification } from './verify.ts';

/** A succeeded job in aind-data-schema's words: its processing section, as metadata.nd.json and the record carry it. */
export function aindProcessingOf(job: PreparedJob, verdict: Verification, results: string, start: string, end: string): AindProcessing {
  const { code } = job.preimage;
  return {
    object_type: 'Processing',
    data_processes: [
      {
        process_type: 'Analysis',
        name: `${job.analysis.name}@${job.analysis.version}`,
        stage: 'Analysis',
        code: {
          url: code.url ?? job.analysis.dir,
          name: job.analysis.name,
          version: code.commit,
          parameters: job.parameters,
          input_data: job.input.inputs.map((input) => ({ url: input.location })),
          run_script: job.analysis.command.join(' '),
        },
        experimenters: [],
        start_date_time: start,
        end_date_time: end,
        output_path: results,
        output_parameters: verdict.outputParameters ?? {},
        notes: `caas identity ${job.identity}; ${job.analysis.name} ${job.analysis.version} at commit ${code.commit}${code.dirty ? ` with uncommitted changes (diff sha256 ${code.dirty})` : ''}`,
      },
    ],
  };
}

export function aindMetadataDocument(job: PreparedJob, folderUrl: string, processing: AindProcessing): AindMetadataDocument {
  return { object_type: 'Metadata', name: `${job.analysis.name}_${job.identity.slice(0, 12)}`, location: folderUrl, processing };
}
