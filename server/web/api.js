/**
 * The page's one way to the API: the bearer token (when the server asks for one) is asked for once,
 * kept in sessionStorage for this tab, and asked for again when the server answers 401.
 */
const TOKEN_KEY = 'caas-token';

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Resolves true when the user gave a token, false when they cancelled. One dialog at a time. */
let asking;
export function askToken(why) {
  asking ??= new Promise((resolve) => {
    const dialog = document.getElementById('token-dialog');
    const input = document.getElementById('token-input');
    document.getElementById('token-why').textContent = why;
    input.value = '';
    dialog.addEventListener(
      'close',
      () => {
        asking = undefined;
        const given = dialog.returnValue === 'ok' && input.value.trim() !== '';
        if (given) sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        document.getElementById('token-button').hidden = !token();
        resolve(given);
      },
      { once: true },
    );
    dialog.showModal();
  });
  return asking;
}

/** fetch with the token; a 401 asks for a token and tries again (until the user cancels). */
export async function authorizedFetch(path, init = {}) {
  for (;;) {
    const headers = new Headers(init.headers);
    const current = token();
    if (current) headers.set('authorization', `Bearer ${current}`);
    const response = await fetch(path, { ...init, headers });
    if (response.status !== 401) return response;
    const why = current
      ? 'The server refused this token (401). Enter another one.'
      : 'This service needs a bearer token. It is kept in this tab only (sessionStorage) and sent with each request.';
    if (current) sessionStorage.removeItem(TOKEN_KEY);
    if (!(await askToken(why))) return response;
  }
}

/**
 * A JSON request: { status, ok, body }. Error statuses are answers too (a 400 carries the issues
 * the form shows beside its fields); only a network failure throws.
 */
export async function api(path, { method = 'GET', body, signal } = {}) {
  const init = { method, signal, headers: { accept: 'application/json' } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['content-type'] = 'application/json';
  }
  const response = await authorizedFetch(path, init);
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text === '' ? null : JSON.parse(text);
  } catch {
    parsed = { error: text };
  }
  return { status: response.status, ok: response.ok, body: parsed };
}

/** What went wrong, for a message: the server's own words when it gave some. */
export function problemOf(answer) {
  return answer.body?.error ?? `the server answered ${answer.status}`;
}

/**
 * Server-Sent Events read with fetch rather than EventSource, which cannot send a bearer token. On a
 * dropped connection it reconnects with Last-Event-ID, so no log line is shown twice or lost; it
 * stops after the `end` event or when `signal` aborts.
 */
export async function followEvents(path, onEvent, signal) {
  let lastId;
  while (!signal.aborted) {
    let ended = false;
    try {
      const headers = { accept: 'text/event-stream' };
      if (lastId) headers['last-event-id'] = lastId;
      const response = await authorizedFetch(path, { headers, signal });
      if (!response.ok) {
        const text = (await response.text()).slice(0, 500);
        // A server draining for a restart (503), a proxy between two (502, 504) or a busy one (429)
        // is asked again from the last event seen; a refusal (4xx) ends the following.
        const again = response.status >= 500 || response.status === 429;
        onEvent({ event: 'error', data: `${response.status}: ${text}${again ? '; reconnecting' : ''}` });
        if (!again) return;
        await new Promise((resolve) => setTimeout(resolve, 2000));
        continue;
      }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, '\n');
        let cut = buffer.indexOf('\n\n');
        while (cut >= 0) {
          const event = parseEvent(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (event.id !== undefined) lastId = event.id;
          if (event.event === 'end') ended = true;
          if (event.data !== undefined) onEvent(event);
          cut = buffer.indexOf('\n\n');
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      onEvent({ event: 'error', data: `connection lost (${error.message}); reconnecting` });
    }
    if (ended) return;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function parseEvent(block) {
  const event = { event: 'message' };
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'data') data.push(value);
    else if (field === 'event') event.event = value;
    else if (field === 'id') event.id = value;
  }
  if (data.length > 0) event.data = data.join('\n');
  return event;
}
