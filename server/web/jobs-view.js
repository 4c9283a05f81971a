import { api, authorizedFetch, followEvents, problemOf, token } from './api.js';
import { badge, fill, h, shortId, when } from './dom.js';

const POLL_MS = 2000;

/** The queue's jobs as a table, asked again every two seconds while the view is open. */
export function jobTable(signal, { limit = 100 } = {}) {
  const body = h('tbody', {});
  const note = h('p', { class: 'hint', 'aria-live': 'polite' });
  const element = h(
    'div',
    { class: 'scroll' },
    h(
      'table',
      { class: 'jobs' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['Job', 'Analysis', 'Group', 'State', 'Queued'].map((title) => h('th', { scope: 'col' }, title)),
        ),
      ),
      body,
    ),
    note,
  );
  const refresh = async () => {
    const answer = await api(`/api/jobs?limit=${limit}`, { signal }).catch(() => undefined);
    if (signal.aborted || !answer) return;
    if (!answer.ok) return fill(note, problemOf(answer));
    fill(note, answer.body.jobs.length === 0 ? 'No jobs yet: submit some from an analysis.' : '');
    fill(
      body,
      answer.body.jobs.map((job) =>
        h(
          'tr',
          { 'data-identity': job._id },
          h('td', { class: 'id' }, h('a', { href: `#/jobs/${job._id}` }, shortId(job._id))),
          h('td', {}, job.analysis),
          h('td', {}, job.group),
          h('td', {}, badge(queueState(job)), job.reason ? h('span', { class: 'hint' }, ` ${job.reason}`) : null),
          h('td', {}, when(job.queued)),
        ),
      ),
    );
  };
  refresh();
  const timer = setInterval(refresh, POLL_MS);
  signal.addEventListener('abort', () => clearInterval(timer));
  return { element };
}

/** The queue's words for where a job is: taken means a server runs it; done says how it ended. */
function queueState(job) {
  if (job.state === 'taken') return 'running';
  if (job.state === 'done') return job.outcome ?? 'done';
  return job.state;
}

export function jobsView() {
  return {
    async render(main, signal) {
      fill(
        main,
        h('h1', {}, 'Jobs'),
        h('p', { class: 'lead' }, 'Jobs submitted through this service, newest first; the states update by themselves.'),
        jobTable(signal).element,
      );
    },
  };
}

/**
 * A job: its state and the agent's status file, the log as it is written (Server-Sent Events,
 * resumed after a dropped connection), then the certificate, the outputs and a link to the record.
 */
export function jobView(identity) {
  return {
    async render(main, signal) {
      const first = await api(`/api/jobs/${identity}`, { signal });
      if (!first.ok) throw new Error(problemOf(first));
      const summary = h('dl', { class: 'facts' });
      const state = h('p', { class: 'state', role: 'status' });
      const log = h('pre', { class: 'log', role: 'log', 'aria-label': 'Log (stdout)', tabindex: '0' });
      const logNote = h('p', { class: 'hint' }, 'Waiting for the first log line…');
      const after = h('div', {});
      const cancel = h('button', { type: 'button', class: 'danger', hidden: true, onclick: () => cancelJob() }, 'Cancel this job');
      const cancelNote = h('p', { class: 'hint', 'aria-live': 'polite' });
      let lines = 0;

      const showStatus = (status) => {
        const file = status.status_file;
        fill(state, 'State ', badge(status.state), file?.status ? [' · agent ', badge(file.status)] : null);
        state.dataset.state = status.state;
        fill(
          summary,
          fact('Analysis', status.analysis ?? '?'),
          fact('Group', status.group ?? '?'),
          fact('Attempts', String(status.attempts)),
          status.queue ? fact('Queued', when(status.queue.queued)) : null,
          status.job_folder ? fact('Job folder', h('code', {}, status.job_folder)) : null,
          file?.job_start ? fact('Started', when(file.job_start)) : null,
          file?.job_finish ? fact('Finished', when(file.job_finish)) : null,
          file?.reason ? fact('Reason', file.reason) : null,
        );
        cancel.hidden = !(status.state === 'queued' || status.state === 'running');
      };
      const showEnd = async () => {
        const answer = await api(`/api/jobs/${identity}`, { signal });
        if (!answer.ok || signal.aborted) return;
        showStatus(answer.body);
        fill(after, ...(await endSections(identity, answer.body, signal)));
      };
      async function cancelJob() {
        cancel.disabled = true;
        const answer = await api(`/api/jobs/${identity}`, { method: 'DELETE', signal });
        fill(cancelNote, answer.ok ? `Cancelled (${answer.body.cancelled}): ${answer.body.reason}` : `Not cancelled: ${problemOf(answer)}`);
        cancel.disabled = false;
      }

      showStatus(first.body);
      fill(
        main,
        h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, 'Jobs'), ' / ', shortId(identity)),
        h('h1', {}, `Job ${shortId(identity)}`),
        h('p', { class: 'meta' }, h('code', { class: 'identity' }, identity)),
        state,
        summary,
        h('div', { class: 'actions' }, cancel, h('a', { class: 'button', href: `#/records/${identity}` }, 'Provenance and why')),
        cancelNote,
        h('h2', {}, 'Log'),
        logNote,
        log,
        after,
      );
      followEvents(
        `/api/jobs/${identity}/events`,
        (event) => {
          if (event.event === 'status') showStatus(JSON.parse(event.data));
          else if (event.event === 'log') {
            const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
            log.append(`${event.data}\n`);
            lines++;
            fill(logNote, `${lines} line${lines === 1 ? '' : 's'}, live`);
            if (atBottom) log.scrollTop = log.scrollHeight;
          } else if (event.event === 'end') {
            fill(logNote, `${lines} line${lines === 1 ? '' : 's'}; the job is over`);
            showEnd();
          } else if (event.event === 'error') fill(logNote, event.data);
        },
        signal,
      );
    },
  };
}

function fact(term, ...value) {
  return [h('dt', {}, term), h('dd', {}, ...value)];
}

/** Once a job is over: its certificate, its outputs (download links) and its output parameters. */
async function endSections(identity, status, signal) {
  const record = status.record;
  const sections = [];
  const certificate = await authorizedFetch(`/api/jobs/${identity}/certificate`, { signal }).catch(() => undefined);
  sections.push(h('h2', {}, 'Certificate'));
  if (certificate?.ok)
    sections.push(h('pre', { class: 'certificate', tabindex: '0', 'aria-label': 'Certificate' }, await certificate.text()));
  else sections.push(h('p', { class: 'hint' }, 'No certificate in the job folder.'));
  sections.push(h('h2', {}, 'Outputs'));
  const manifest = record?.outputs?.manifest ?? [];
  if (manifest.length === 0)
    sections.push(
      h(
        'p',
        { class: 'hint' },
        record ? `No outputs recorded (${record.status}${record.reason ? `: ${record.reason}` : ''}).` : 'No record yet.',
      ),
    );
  else
    sections.push(
      h(
        'ul',
        { class: 'outputs' },
        manifest.map((entry) => {
          const relative = entry.key.slice(entry.key.indexOf('/process_results/') + '/process_results/'.length);
          return h(
            'li',
            {},
            downloadLink(identity, relative),
            h('span', { class: 'hint' }, ` ${formatBytes(entry.size)} · sha256 ${entry.sha256.slice(0, 12)}…`),
          );
        }),
      ),
    );
  const outputParameters = record?.outputs?.output_parameters;
  if (outputParameters) {
    sections.push(
      h('h3', {}, 'Output parameters'),
      h(
        'dl',
        { class: 'facts' },
        Object.entries(outputParameters).map(([key, value]) => fact(key, h('code', {}, JSON.stringify(value)))),
      ),
    );
  }
  return sections;
}

/**
 * A plain link when no token is in use (the browser downloads it itself); with a token the file is
 * fetched with it and handed to the browser as a blob, since a link cannot carry the header.
 */
function downloadLink(identity, relative) {
  const href = `/api/jobs/${identity}/outputs/${relative.split('/').map(encodeURIComponent).join('/')}`;
  const name = relative.split('/').pop();
  return h(
    'a',
    {
      href,
      download: name,
      class: 'download',
      onclick: async (event) => {
        if (!token()) return;
        event.preventDefault();
        const response = await authorizedFetch(href);
        if (!response.ok) return;
        const url = URL.createObjectURL(await response.blob());
        const link = h('a', { href: url, download: name });
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10_000);
      },
    },
    relative,
  );
}

function formatBytes(size) {
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KiB`;
  return `${(size / 1024 / 1024).toFixed(1)} MiB`;
}
