import type { AindMetadataDocument, AindProcessing } from '../models/aind-processing.ts';
import type { JobDocument } from '../models/job-document.ts';

/** How a job ended, as far as its processing section tells it. */
export interface ProcessingEnd {
  start: string;
  end: string;
  outputParameters: Record<string, unknown> | null;
}

/**
 * A succeeded job in aind-data-schema's words. The agent writes it into metadata.nd.json before
 * end.txt (nothing lands in a job folder after end.txt); the runner puts the same section into the
 * record, with the output parameters as its outputs model returned them.
 */
export function aindProcessingOf(job: JobDocument, ended: ProcessingEnd): AindProcessing {
  const { code } = job;
  return {
    object_type: 'Processing',
    data_processes: [
      {
        process_type: 'Analysis',
        name: `${job.analysis.name}@${job.analysis.version}`,
        stage: 'Analysis',
        code: {
          url: code.url,
          name: job.analysis.name,
          version: code.commit,
          parameters: job.parameters,
          input_data: job.inputs.map((input) => ({ url: input.location })),
          run_script: job.command.join(' '),
        },
        experimenters: [],
        start_date_time: ended.start,
        end_date_time: ended.end,
        output_path: job.results,
        output_parameters: ended.outputParameters ?? {},
        notes: `caas identity ${job.identity}; ${job.analysis.name} ${job.analysis.version} at commit ${code.commit}${code.dirty ? ` with uncommitted changes (diff sha256 ${code.dirty})` : ''}`,
      },
    ],
  };
}

/** metadata.nd.json: AIND's combined metadata document of a job folder, holding its processing section. */
export function aindMetadataDocument(job: JobDocument, folderUrl: string, processing: AindProcessing): AindMetadataDocument {
  return { object_type: 'Metadata', name: `${job.analysis.name}_${job.identity.slice(0, 12)}`, location: folderUrl, processing };
}
