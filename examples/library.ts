// caas from a Node program: sample data, dispatch, plan, run, then the records. The same steps as
// `npm run demo`, with the library instead of the CLI. In an ES module project that depends on caas:
//   node --import tsx library.ts [workspace]
import { dispatch, generateSample, plan, query, run } from 'caas';

const home = process.argv[2] ?? '.caas';
const jobs = `${home}/library-jobs.jsonl`;

const sample = await generateSample({ home });
console.log(`sample data: ${sample.count} assets in bucket ${sample.bucket}`);

const dispatched = await dispatch({
  home,
  query: '{"subject.subject_id": "774659", "data_description.data_level": "derived"}',
  analysis: 'unit-filter',
  fileExt: '.spikes.json',
  group: 'demo',
  output: jobs,
});
console.log(`dispatched ${dispatched.jobs} jobs to ${jobs}`);

const planned = await plan({ home, source: jobs });
console.log(`plan: ${planned.summary.planned.RUN} to run, ${planned.summary.planned.SKIP} skipped`);

const done = await run({ home, source: jobs });
console.log(`ran: ${done.results.map((result) => result.outcome).join(', ')}`);

for await (const record of query({ 'analysis.name': 'unit-filter' }, { home })) {
  console.log(`record ${record._id.slice(0, 12)} ${record.status} ${record.inputs.map((input) => input.name).join('+')}`);
}
