/**
 * Elements from data, never from HTML strings: every value the server sends (names, log lines,
 * record fields) becomes text, so nothing it holds can run as markup on this page.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') element.addEventListener(key.slice(2), value);
    else if (key === 'class') element.className = value;
    else if (key === 'value' && 'value' in element) element.value = String(value);
    else if (key === 'checked' || key === 'selected') element[key] = Boolean(value);
    else element.setAttribute(key, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Number.POSITIVE_INFINITY)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces an element's children. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export function shortId(identity) {
  return identity ? `${identity.slice(0, 12)}…` : '';
}

/** A time the way a person reads it, in their own zone; the ISO text stays in the title. */
export function when(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : h('time', { datetime: iso, title: iso }, date.toLocaleString());
}

/** A state as a badge whose colour class follows what it means, never the only signal (the word is there). */
export function badge(state) {
  const text = String(state ?? 'unknown');
  const tone =
    text === 'RUN'
      ? 'run'
      : /succe|skip|done/i.test(text)
        ? 'good'
        : /fail|invalid|refused|cancel/i.test(text)
          ? 'bad'
          : /run|progress|taken|initial/i.test(text)
            ? 'busy'
            : 'idle';
  return h('span', { class: `badge ${tone}` }, text);
}
