import { fill, h } from './dom.js';

/**
 * A form generated from an analysis' parameter JSON Schema (what GET /api/analyses/{name} sends):
 * one labelled field per property, its default filled in, its description, range and choices shown
 * as a hint. The browser's own checks are off (novalidate on the form): the server's zod model is
 * the one judge, and its issues come back with paths that setIssues puts beside their fields.
 */
export function schemaForm(schema, { idPrefix = 'param', onChange = () => {} } = {}) {
  const properties = schema?.properties ?? {};
  const required = new Set(schema?.required ?? []);
  const fields = new Map();
  const element = h('div', { class: 'fields' });
  for (const [name, property] of Object.entries(properties)) {
    const field = makeField(`${idPrefix}-${name}`, name, property, required.has(name), onChange);
    fields.set(name, field);
    element.append(field.element);
  }
  if (fields.size === 0) element.append(h('p', { class: 'hint' }, 'This analysis takes no parameters.'));
  return {
    element,
    /** The parameters as JSON values; a field left empty is left out, so its default applies. */
    values() {
      const values = {};
      const problems = [];
      for (const [name, field] of fields) {
        const read = field.read();
        if (read.problem) problems.push({ path: ['params', name], message: read.problem });
        else if (read.value !== undefined) values[name] = read.value;
      }
      return { values, problems };
    },
    /** Shows each issue beside its field; returns the issues no field owns, for the form's own list. */
    setIssues(issues) {
      for (const field of fields.values()) field.setError(undefined);
      const unplaced = [];
      for (const issue of issues) {
        const path = issue.path ?? [];
        const owner = (path[0] === 'params' || path[0] === 'parameters') && fields.get(String(path[1]));
        if (owner) owner.setError(issue.message, path.slice(2));
        else unplaced.push(issue);
      }
      return unplaced;
    },
    focusFirstError() {
      for (const field of fields.values()) if (field.control.getAttribute('aria-invalid') === 'true') return field.control.focus();
    },
  };
}

function kindOf(property) {
  if (Array.isArray(property.enum)) return 'enum';
  const type = Array.isArray(property.type) ? property.type.find((t) => t !== 'null') : property.type;
  if (type === 'number' || type === 'integer' || type === 'boolean' || type === 'string') return type;
  return 'json';
}

function hintOf(property, kind) {
  const parts = [];
  if (property.description) parts.push(property.description);
  const range = [];
  if (property.minimum !== undefined) range.push(`≥ ${property.minimum}`);
  if (property.exclusiveMinimum !== undefined) range.push(`> ${property.exclusiveMinimum}`);
  if (property.maximum !== undefined) range.push(`≤ ${property.maximum}`);
  if (property.exclusiveMaximum !== undefined) range.push(`< ${property.exclusiveMaximum}`);
  if (range.length > 0) parts.push(`${kind === 'integer' ? 'a whole number' : 'a number'} ${range.join(' and ')}`);
  if (property.default !== undefined) parts.push(`default ${JSON.stringify(property.default)}`);
  if (kind === 'json') parts.push('JSON');
  return parts.join(' · ');
}

function makeField(id, name, property, isRequired, onChange) {
  const kind = kindOf(property);
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const common = { id, name, 'aria-describedby': `${hintId} ${errorId}`, oninput: onChange, onchange: onChange };
  let control;
  if (kind === 'enum') {
    control = h(
      'select',
      common,
      isRequired || property.default !== undefined ? null : h('option', { value: '' }, '(not set)'),
      property.enum.map((choice) => h('option', { value: JSON.stringify(choice), selected: choice === property.default }, String(choice))),
    );
  } else if (kind === 'boolean') {
    control = h('input', { ...common, type: 'checkbox', checked: property.default === true });
  } else if (kind === 'number' || kind === 'integer') {
    control = h('input', {
      ...common,
      type: 'number',
      inputmode: 'decimal',
      step: kind === 'integer' ? '1' : 'any',
      min: property.minimum ?? property.exclusiveMinimum,
      max: property.maximum ?? property.exclusiveMaximum,
      value: property.default,
    });
  } else if (kind === 'string') {
    control = h('input', { ...common, type: 'text', value: property.default, spellcheck: 'false' });
  } else {
    control = h(
      'textarea',
      { ...common, rows: 3, spellcheck: 'false' },
      property.default === undefined ? '' : JSON.stringify(property.default),
    );
  }
  const error = h('p', { class: 'field-error', id: errorId, 'aria-live': 'polite' });
  const element = h(
    'div',
    { class: `field field-${kind}` },
    h('label', { for: id }, name, isRequired ? h('span', { class: 'required', title: 'required' }, ' *') : null),
    control,
    h('p', { class: 'hint', id: hintId }, hintOf(property, kind)),
    error,
  );
  return {
    element,
    control,
    read() {
      if (kind === 'boolean') return { value: control.checked };
      const text = control.value;
      if (text.trim() === '') return { value: undefined };
      if (kind === 'enum') return { value: JSON.parse(text) };
      if (kind === 'number' || kind === 'integer') {
        const number = Number(text);
        // Sent as the text typed when it is not a number: the server says what it expects.
        return { value: Number.isFinite(number) ? number : text };
      }
      if (kind === 'string') return { value: text };
      try {
        return { value: JSON.parse(text) };
      } catch {
        return { problem: 'not valid JSON' };
      }
    },
    setError(message, rest = []) {
      if (message === undefined) {
        control.removeAttribute('aria-invalid');
        fill(error);
        return;
      }
      control.setAttribute('aria-invalid', 'true');
      fill(error, rest.length > 0 ? `${rest.join('.')}: ${message}` : message);
    },
  };
}
