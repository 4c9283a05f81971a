import { Command } from 'commander';
import { describe, expect, it, vi } from 'vitest';
import { listAnalysisNames } from '../../analyses/index.ts';
import { registerSchema } from '../../cli/commands/schema.ts';
import { namedModels } from '../../models/index.ts';

/** `caas schema <name>` in this process; its JSON Schema as printed. */
async function schemaOf(name: string): Promise<Record<string, unknown>> {
  const program = new Command('caas').exitOverride();
  registerSchema(program);
  let stdout = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation(((chunk: string) => {
    stdout += chunk;
    return true;
  }) as never);
  try {
    await program.parseAsync(['node', 'caas', 'schema', name]);
  } finally {
    spy.mockRestore();
  }
  return JSON.parse(stdout) as Record<string, unknown>;
}

describe('caas schema', () => {
  it.each(Object.keys(namedModels))('the %s contract is a JSON Schema object with properties', async (name) => {
    const schema = await schemaOf(name);
    expect(schema).toMatchObject({ title: name, type: 'object' });
    expect(Object.keys(schema.properties as object).length).toBeGreaterThan(0);
  });

  const analyses = listAnalysisNames();
  it('finds the built-in analyses', () => {
    expect(analyses).toEqual(expect.arrayContaining(['mock-wait', 'unit-filter']));
  });

  it.each(analyses)("the %s analysis' parameters are a JSON Schema object with properties", async (name) => {
    const schema = await schemaOf(name);
    expect(schema).toMatchObject({ title: name, type: 'object' });
    const properties = schema.properties as Record<string, { description?: string }>;
    expect(Object.keys(properties).length).toBeGreaterThan(0);
    // A form generated from the schema needs a label per field.
    for (const [field, property] of Object.entries(properties)) expect(property.description, `${name}.${field}`).toBeTruthy();
  });
});
