import { api, problemOf } from './api.js';
import { badge, fill, h, shortId, when } from './dom.js';

/**
 * A record's provenance: the pre-image its identity is the sha256 of (analysis, code commit,
 * parameters, inputs, output), its attempts, and "why": how its pre-image differs from the nearest
 * records of the same analysis and inputs. A job whose pre-image equals a record's has that
 * record's identity and SKIPs; any difference listed here is a reason it ran again.
 */
export function recordView(identity) {
  return {
    async render(main, signal) {
      const answer = await api(`/api/jobs/${identity}`, { signal });
      if (!answer.ok) throw new Error(problemOf(answer));
      const record = answer.body.record;
      const head = [
        h('p', { class: 'crumbs' }, h('a', { href: `#/jobs/${identity}` }, `Job ${shortId(identity)}`), ' / provenance'),
        h('h1', {}, `Record ${shortId(identity)}`),
        h('p', { class: 'meta' }, h('code', { class: 'identity' }, identity)),
      ];
      if (!record) {
        fill(main, ...head, h('p', {}, `No record yet: the job is ${answer.body.state}. It is written when the job is claimed.`));
        return;
      }
      const pre = record.preimage;
      const why = h('div', { 'aria-live': 'polite' }, h('p', { class: 'hint' }, 'Looking for related records…'));
      const against = h('input', {
        id: 'why-against',
        type: 'text',
        spellcheck: 'false',
        pattern: '[0-9a-f]{64}',
        placeholder: '64 hex digits',
        'aria-describedby': 'why-against-hint',
      });
      const compareForm = h(
        'form',
        { class: 'inline', novalidate: true },
        h(
          'div',
          { class: 'field' },
          h('label', { for: 'why-against' }, 'Compare with another record'),
          against,
          h('p', { class: 'hint', id: 'why-against-hint' }, 'an identity: 64 hex digits (empty: the nearest records)'),
        ),
        h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Compare')),
      );
      compareForm.addEventListener('submit', (event) => {
        event.preventDefault();
        loadWhy(identity, against.value.trim(), why, signal);
      });
      fill(
        main,
        ...head,
        h(
          'p',
          { class: 'state' },
          'Status ',
          badge(record.status),
          record.reason ? h('span', { class: 'hint' }, ` ${record.reason}`) : null,
        ),
        h('h2', {}, 'Provenance'),
        h(
          'dl',
          { class: 'facts provenance' },
          fact('Analysis', `${pre.analysis.name} ${pre.analysis.version}`),
          fact('Commit', h('code', { class: 'commit' }, pre.code.commit)),
          fact('Repository', pre.code.url ? h('code', {}, pre.code.url) : 'no remote'),
          pre.code.dirty ? fact('Uncommitted diff', h('code', {}, pre.code.dirty)) : null,
          fact('Output', h('code', {}, pre.output)),
          fact('Created', when(record.created)),
          record.duration_s !== null ? fact('Duration', `${record.duration_s.toFixed(1)} s`) : null,
          fact('Ran on', `${record.compute.backend} · ${record.compute.host}${record.compute.type ? ` · ${record.compute.type}` : ''}`),
        ),
        h('h3', {}, 'Parameters'),
        h(
          'dl',
          { class: 'facts parameters' },
          Object.entries(pre.parameters).map(([key, value]) => fact(key, h('code', {}, JSON.stringify(value)))),
        ),
        h('h3', {}, 'Inputs'),
        h(
          'ul',
          { class: 'inputs' },
          pre.inputs.map((input) =>
            h(
              'li',
              {},
              h('strong', {}, input.name),
              ' ',
              h('code', {}, (input.files ?? []).map((f) => f.url).join(', ') || input.location),
            ),
          ),
        ),
        h(
          'details',
          {},
          h('summary', {}, 'The whole pre-image (its sha256 is the identity)'),
          h('pre', { class: 'json', tabindex: '0' }, JSON.stringify(pre, null, 2)),
        ),
        h('h3', {}, 'Attempts'),
        attemptsTable(record.attempts),
        h('h2', {}, 'Why did this run, or skip?'),
        h(
          'p',
          {},
          'A job skips when its pre-image equals a record’s: then it has the same identity. Each difference below is a reason this record is its own job.',
        ),
        compareForm,
        why,
      );
      loadWhy(identity, '', why, signal);
    },
  };
}

async function loadWhy(identity, against, target, signal) {
  const answer = await api(`/api/records/${identity}/why${against ? `?against=${encodeURIComponent(against)}` : ''}`, { signal });
  if (signal.aborted) return;
  if (!answer.ok) return fill(target, h('p', { class: 'error', role: 'alert' }, problemOf(answer)));
  const { compared, candidates } = answer.body;
  if (compared.length === 0)
    return fill(
      target,
      h('p', {}, 'No other record of this analysis shares an input with it: it ran because nothing like it had run before.'),
    );
  fill(
    target,
    against
      ? null
      : h(
          'p',
          { class: 'hint' },
          `The ${compared.length} nearest of ${candidates} record${candidates === 1 ? '' : 's'} of this analysis sharing an input:`,
        ),
    compared.map((other) =>
      h(
        'section',
        { class: 'why' },
        h(
          'h3',
          {},
          'Against ',
          h('a', { href: `#/records/${other.against}` }, shortId(other.against)),
          ' ',
          badge(other.status),
          ' ',
          h('span', { class: 'hint' }, when(other.created)),
        ),
        other.differences.length === 0
          ? h('p', {}, 'The same pre-image.')
          : h(
              'div',
              { class: 'scroll' },
              h(
                'table',
                {},
                h(
                  'thead',
                  {},
                  h(
                    'tr',
                    {},
                    h('th', { scope: 'col' }, 'Field'),
                    h('th', { scope: 'col' }, 'This record'),
                    h('th', { scope: 'col' }, 'That record'),
                  ),
                ),
                h(
                  'tbody',
                  {},
                  other.differences.map((d) =>
                    h('tr', {}, h('td', {}, h('code', {}, d.path)), h('td', {}, valueText(d.this)), h('td', {}, valueText(d.against))),
                  ),
                ),
              ),
            ),
      ),
    ),
  );
}

function valueText(value) {
  return value === undefined ? h('em', {}, 'missing') : h('code', {}, JSON.stringify(value));
}

function fact(term, ...value) {
  return [h('dt', {}, term), h('dd', {}, ...value)];
}

function attemptsTable(attempts) {
  return h(
    'div',
    { class: 'scroll' },
    h(
      'table',
      {},
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['#', 'Status', 'Started', 'Ended', 'Where', 'Reason'].map((t) => h('th', { scope: 'col' }, t)),
        ),
      ),
      h(
        'tbody',
        {},
        attempts.map((a) =>
          h(
            'tr',
            {},
            h('td', {}, String(a.n)),
            h('td', {}, badge(a.status)),
            h('td', {}, when(a.started)),
            h('td', {}, when(a.ended)),
            h('td', {}, `${a.owner.host} pid ${a.owner.pid}`),
            h('td', {}, a.reason ?? ''),
          ),
        ),
      ),
    ),
  );
}
