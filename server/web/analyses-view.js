import { api, problemOf } from './api.js';
import { badge, fill, h, shortId } from './dom.js';
import { jobTable } from './jobs-view.js';
import { schemaForm } from './schema-form.js';

const ACTIONS = ['RUN', 'SKIP', 'RUNNING', 'INVALID', 'REFUSED'];
const PREVIEW_DELAY_MS = 350;
const CATALOG_LIMIT = 500;

/** The start page: the analyses this service runs, and the latest jobs with their live state. */
export function analysesView() {
  return {
    async render(main, signal) {
      const answer = await api('/api/analyses', { signal });
      if (!answer.ok) throw new Error(problemOf(answer));
      const list = h(
        'ul',
        { class: 'cards' },
        answer.body.analyses.map((analysis) =>
          h(
            'li',
            { class: 'card' },
            h('h2', {}, h('a', { href: `#/analyses/${encodeURIComponent(analysis.name)}` }, analysis.name)),
            h('p', { class: 'meta' }, `version ${analysis.version || '?'}`, ' · ', codeText(analysis.code)),
            h('p', {}, analysis.description || ''),
            analysis.code.problem ? h('p', { class: 'error' }, analysis.code.problem) : null,
          ),
        ),
      );
      const jobs = jobTable(signal, { limit: 10 });
      fill(
        main,
        h('h1', {}, 'Analyses'),
        h(
          'p',
          { class: 'lead' },
          'Pick an analysis to set its parameters, choose datasets from the catalog and see the plan before anything runs.',
        ),
        list,
        h('h2', {}, 'Latest jobs'),
        jobs.element,
        h('p', {}, h('a', { href: '#/jobs' }, 'All jobs')),
      );
    },
  };
}

function codeText(code) {
  if (code.commit) return `commit ${code.commit.slice(0, 10)}${code.dirty ? ' (uncommitted changes)' : ''}`;
  return 'code version unknown';
}

/**
 * An analysis: its parameter form, the dataset picker and the plan. Every change asks the server
 * for a dry-run plan (POST /api/dispatch without execute) a moment after the user stops typing, so
 * what the page says will RUN, SKIP or be INVALID is what the gate decides, not a guess.
 */
export function analysisView(name) {
  return {
    async render(main, signal) {
      const [detailAnswer, catalogAnswer] = await Promise.all([
        api(`/api/analyses/${encodeURIComponent(name)}`, { signal }),
        api(`/api/catalog?limit=${CATALOG_LIMIT}`, { signal }),
      ]);
      if (!detailAnswer.ok) throw new Error(problemOf(detailAnswer));
      const detail = detailAnswer.body;
      let sequence = 0;
      let timer;
      const schedulePreview = () => {
        clearTimeout(timer);
        timer = setTimeout(() => preview(), PREVIEW_DELAY_MS);
      };
      signal.addEventListener('abort', () => clearTimeout(timer));

      const parameters = schemaForm(detail.parameters, { idPrefix: 'param', onChange: schedulePreview });
      const picker = datasetPicker(catalogAnswer, schedulePreview, signal);
      const fileExt = h('input', {
        id: 'file-ext',
        type: 'text',
        placeholder: '.spikes.json',
        spellcheck: 'false',
        'aria-describedby': 'file-ext-hint',
        oninput: schedulePreview,
      });
      const group = h('input', {
        id: 'group',
        type: 'text',
        placeholder: 'caas',
        spellcheck: 'false',
        'aria-describedby': 'group-hint',
        oninput: schedulePreview,
      });
      const formErrors = h('div', { class: 'form-errors wide', role: 'alert' });
      const plan = h('section', { class: 'plan wide', 'aria-labelledby': 'plan-title' });
      const planBody = h('div', { 'aria-live': 'polite' }, h('p', { class: 'hint' }, 'Pick at least one dataset to see the plan.'));
      plan.append(h('h2', { id: 'plan-title' }, 'Plan'), planBody);
      const submit = h('button', { type: 'submit', class: 'primary' }, 'Run the plan');
      const outcome = h('div', { class: 'outcome wide', 'aria-live': 'polite' });

      const request = (execute) => {
        const { values, problems } = parameters.values();
        const body = { analysis: name, assets: picker.selected(), params: values, execute };
        if (fileExt.value.trim()) body.file_ext = fileExt.value.trim();
        if (group.value.trim()) body.group = group.value.trim();
        return { body, problems };
      };
      const showProblems = (issues, message) => {
        const unplaced = parameters.setIssues(issues);
        fill(
          formErrors,
          unplaced.length > 0 || (issues.length === 0 && message)
            ? h(
                'ul',
                {},
                (unplaced.length > 0 ? unplaced.map((i) => `${(i.path ?? []).join('.') || 'request'}: ${i.message}`) : [message]).map(
                  (text) => h('li', {}, text),
                ),
              )
            : null,
        );
      };

      async function preview() {
        const mine = ++sequence;
        const { body, problems } = request(false);
        if (problems.length > 0) return showProblems(problems);
        if (body.assets.length === 0) {
          showProblems([]);
          return fill(planBody, h('p', { class: 'hint' }, 'Pick at least one dataset to see the plan.'));
        }
        planBody.setAttribute('aria-busy', 'true');
        const answer = await api('/api/dispatch', { method: 'POST', body, signal }).catch((error) => ({
          ok: false,
          status: 0,
          body: { error: error.message },
        }));
        if (mine !== sequence || signal.aborted) return;
        planBody.removeAttribute('aria-busy');
        if (answer.status === 400 || answer.status === 404 || !answer.body?.counts) {
          showProblems(answer.body?.issues ?? [], problemOf(answer));
          return fill(planBody, h('p', { class: 'error' }, 'No plan: fix what is marked above.'));
        }
        showProblems(answer.body.jobs.flatMap((job) => job.issues ?? []));
        fill(planBody, planView(answer.body));
      }

      const form = h(
        'form',
        { novalidate: true, class: 'analysis-form', 'aria-labelledby': 'analysis-title' },
        h('fieldset', {}, h('legend', {}, 'Parameters'), parameters.element),
        h(
          'fieldset',
          {},
          h('legend', {}, 'Datasets'),
          picker.element,
          h(
            'div',
            { class: 'field' },
            h('label', { for: 'file-ext' }, 'File extension'),
            fileExt,
            h('p', { class: 'hint', id: 'file-ext-hint' }, 'one job per file of the dataset ending with this (empty: every file)'),
          ),
          h(
            'div',
            { class: 'field' },
            h('label', { for: 'group' }, 'Group'),
            group,
            h('p', { class: 'hint', id: 'group-hint' }, 'the user group the jobs run for (empty: your token’s group, else caas)'),
          ),
        ),
        formErrors,
        plan,
        h('div', { class: 'actions wide' }, submit, h('button', { type: 'button', onclick: () => preview() }, 'Refresh the plan')),
        outcome,
      );
      form.addEventListener('submit', async (event) => {
        event.preventDefault();
        const { body, problems } = request(true);
        if (problems.length > 0) return showProblems(problems);
        if (body.assets.length === 0) return showProblems([], 'Pick at least one dataset first.');
        submit.disabled = true;
        fill(outcome, h('p', { class: 'hint' }, 'Submitting…'));
        try {
          const answer = await api('/api/dispatch', { method: 'POST', body, signal });
          if (!answer.body?.counts) {
            showProblems(answer.body?.issues ?? [], problemOf(answer));
            fill(outcome, h('p', { class: 'error' }, `Not submitted: ${problemOf(answer)}`));
            parameters.focusFirstError();
            return;
          }
          showProblems([]);
          fill(planBody, planView(answer.body));
          const queued = answer.body.jobs.filter((job) => job.queued);
          fill(
            outcome,
            h(
              'h2',
              { tabindex: '-1', id: 'outcome-title' },
              queued.length > 0 ? `Submitted: ${queued.length} job${queued.length === 1 ? '' : 's'} queued` : 'Nothing new to run',
            ),
            h(
              'ul',
              { class: 'links' },
              queued.map((job) =>
                h('li', {}, h('a', { href: `#/jobs/${job.identity}` }, `Job ${shortId(job.identity)}`), ' ', badge(job.action)),
              ),
            ),
          );
          outcome.querySelector('h2').focus();
        } finally {
          submit.disabled = false;
        }
      });

      fill(
        main,
        h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Analyses'), ' / ', name),
        h('h1', { id: 'analysis-title' }, name),
        h('p', { class: 'meta' }, `version ${detail.version}`, ' · ', codeText(detail.code), ' · ', `bucket ${detail.blueprint.bucket}`),
        detail.description ? h('p', { class: 'lead' }, detail.description) : null,
        detail.code.problem ? h('p', { class: 'error' }, detail.code.problem) : null,
        form,
      );
    },
  };
}

/** The counts first (what a user decides on), then one row per job. */
function planView(answer) {
  const counts = h(
    'ul',
    { class: 'counts', 'aria-label': 'jobs by action' },
    ACTIONS.filter((action) => action !== 'REFUSED' || answer.counts.REFUSED > 0).map((action) =>
      h(
        'li',
        { class: `count count-${action.toLowerCase()}`, 'data-action': action },
        h('strong', {}, String(answer.counts[action] ?? 0)),
        ' ',
        action,
      ),
    ),
  );
  const dispatched = answer.dispatched
    ? h(
        'p',
        { class: 'hint' },
        `${answer.dispatched.assets} dataset${answer.dispatched.assets === 1 ? '' : 's'} → ${answer.dispatched.jobs} job${answer.dispatched.jobs === 1 ? '' : 's'}${answer.dispatched.max_jobs_reached ? ' (stopped at the job limit)' : ''}`,
      )
    : null;
  const rows = answer.jobs.map((job) =>
    h(
      'tr',
      {},
      h('td', {}, badge(job.action)),
      h(
        'td',
        { class: 'id' },
        job.identity
          ? h('a', { href: job.action === 'SKIP' ? `#/records/${job.identity}` : `#/jobs/${job.identity}` }, shortId(job.identity))
          : job.where,
      ),
      h('td', {}, job.reason ?? (job.action === 'RUN' ? 'new identity: it runs' : '')),
    ),
  );
  return h(
    'div',
    {},
    counts,
    dispatched,
    rows.length > 0
      ? h(
          'div',
          { class: 'scroll' },
          h(
            'table',
            {},
            h(
              'thead',
              {},
              h('tr', {}, h('th', { scope: 'col' }, 'Action'), h('th', { scope: 'col' }, 'Job'), h('th', { scope: 'col' }, 'Why')),
            ),
            h('tbody', {}, rows),
          ),
        )
      : null,
  );
}

/**
 * The catalog as a list of checkboxes, narrowed as the user types (by name, id or any field's
 * text); "Select shown" picks what the filter leaves. Ids go to the server as `assets`.
 */
function datasetPicker(catalogAnswer, onChange) {
  const element = h('div', { class: 'picker' });
  if (!catalogAnswer.ok) {
    element.append(h('p', { class: 'error' }, `The catalog could not be read: ${problemOf(catalogAnswer)}`));
    return { element, selected: () => [] };
  }
  const assets = catalogAnswer.body.assets;
  const search = h('input', {
    id: 'dataset-search',
    type: 'search',
    placeholder: 'subject, session, id…',
    spellcheck: 'false',
    'aria-controls': 'dataset-list',
  });
  const status = h('p', { class: 'hint', id: 'dataset-status', 'aria-live': 'polite' });
  const boxes = assets.map((asset, i) => {
    const id = `dataset-${i}`;
    const box = h('input', { type: 'checkbox', id, value: String(asset._id), onchange: () => update(true) });
    const subject = asset.subject?.subject_id;
    const item = h(
      'li',
      {},
      box,
      h(
        'label',
        { for: id },
        h('span', { class: 'name' }, asset.name),
        subject ? h('span', { class: 'hint' }, ` subject ${subject}`) : null,
      ),
    );
    return { asset, box, item, text: JSON.stringify(asset).toLowerCase() };
  });
  const list = h(
    'ul',
    { class: 'dataset-list', id: 'dataset-list' },
    boxes.map((b) => b.item),
  );
  const update = (changed) => {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const b of boxes) {
      b.item.hidden = !words.every((word) => b.text.includes(word));
      if (!b.item.hidden) shown++;
    }
    const chosen = boxes.filter((b) => b.box.checked).length;
    status.textContent = `${chosen} of ${assets.length} selected${shown < assets.length ? `, ${shown} shown` : ''}${catalogAnswer.body.more ? ` (the first ${assets.length} of the catalog)` : ''}`;
    if (changed) onChange();
  };
  search.addEventListener('input', () => update(false));
  const selectShown = h(
    'button',
    {
      type: 'button',
      onclick: () => {
        for (const b of boxes) if (!b.item.hidden) b.box.checked = true;
        update(true);
      },
    },
    'Select shown',
  );
  const clear = h(
    'button',
    {
      type: 'button',
      onclick: () => {
        for (const b of boxes) b.box.checked = false;
        update(true);
      },
    },
    'Clear',
  );
  element.append(
    h('div', { class: 'field' }, h('label', { for: 'dataset-search' }, 'Search the catalog'), search),
    h('div', { class: 'actions' }, selectShown, clear),
    status,
    assets.length > 0 ? list : h('p', { class: 'hint' }, 'The catalog is empty: caas catalog import (or generate-sample) fills it.'),
  );
  update(false);
  return { element, selected: () => boxes.filter((b) => b.box.checked).map((b) => b.box.value) };
}
