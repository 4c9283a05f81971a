import { analysesView, analysisView } from './analyses-view.js';
import { api, askToken, problemOf, token } from './api.js';
import { h } from './dom.js';
import { jobsView, jobView } from './jobs-view.js';
import { recordView } from './record-view.js';

/**
 * The analysts' page: a hash router over four views. Each view renders into <main> and returns a
 * function that stops what it keeps running (polls, event streams) when the user leaves it.
 */
const ROUTES = [
  [/^#?\/?$/, () => analysesView()],
  [/^#\/analyses\/([^/]+)$/, (name) => analysisView(decodeURIComponent(name))],
  [/^#\/jobs$/, () => jobsView()],
  [/^#\/jobs\/([0-9a-f]{64})$/, (identity) => jobView(identity)],
  [/^#\/records\/([0-9a-f]{64})$/, (identity) => recordView(identity)],
];

const main = document.getElementById('main');
let leave = () => {};

async function show() {
  leave();
  leave = () => {};
  const hash = location.hash;
  for (const link of document.querySelectorAll('header nav a')) {
    const here = link.getAttribute('href') === (hash.startsWith('#/jobs') ? '#/jobs' : '#/');
    if (here) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const route = ROUTES.find(([pattern]) => pattern.test(hash));
  const controller = new AbortController();
  leave = () => controller.abort();
  main.replaceChildren(h('p', { class: 'hint' }, 'Loading…'));
  try {
    if (!route) throw new Error(`no page at ${hash}: go back to the analyses`);
    const match = hash.match(route[0]);
    await route[1](...match.slice(1)).render(main, controller.signal);
  } catch (error) {
    if (controller.signal.aborted) return;
    main.replaceChildren(
      h('h1', {}, 'Something went wrong'),
      h('p', { class: 'error', role: 'alert' }, error.message),
      h('p', {}, h('a', { href: '#/' }, 'Back to the analyses')),
    );
  }
  // Moving between views moves the keyboard focus to the new content, as a page load would.
  if (document.activeElement === document.body || !main.contains(document.activeElement)) main.focus({ preventScroll: true });
  document.title = `${main.querySelector('h1')?.textContent ?? 'caas'} · caas`;
}

document.getElementById('token-button').addEventListener('click', () => askToken('Enter the token to use from now on.'));
document.getElementById('token-button').hidden = !token();
// The skip link moves the focus to the content; it is not a page of its own (the router's hashes start with #/).
document.querySelector('a.skip')?.addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
});
window.addEventListener('hashchange', () => {
  if (location.hash === '' || location.hash.startsWith('#/')) show();
});
show();

// The health of the service, for the header: a red dot when the DB or the store does not answer.
api('/readyz').then((answer) => {
  if (answer.ok) return;
  const failing = Object.entries(answer.body?.checks ?? {}).filter(([, state]) => state !== 'ok');
  const text = failing.length > 0 ? failing.map(([what, state]) => `${what}: ${state}`).join('; ') : problemOf(answer);
  document.querySelector('header.top').append(h('span', { class: 'badge bad', role: 'status' }, `not ready: ${text}`));
});
