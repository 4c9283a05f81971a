import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { AnalysisError, UnknownAnalysisError } from '../../analyses/index.ts';
import { UnknownComputeError } from '../../backends/compute/index.ts';
import { DatabaseUrlError } from '../../backends/db/index.ts';
import { KeyRefused, StoreUrlError } from '../../backends/storage/index.ts';
import { BlueprintImportRefused } from '../../cli/commands/blueprint.ts';
import { UsageError } from '../../cli/settings.ts';
import { DispatchError } from '../../dispatcher/dispatch-error.ts';
import { CaasError, exitCodeOf } from '../../models/caas-error.ts';
import { InvalidFilterError } from '../../models/filter.ts';
import { CodeVersionError } from '../../wrapper/code-version.ts';
import { NoJobFolder } from '../../wrapper/follow.ts';
import { JobSourceError } from '../../wrapper/job-source.ts';
import { RecordLookupError } from '../../wrapper/record-lookup.ts';
import { QueryError } from '../../wrapper/record-query.ts';
import { RunRefused } from '../../wrapper/run.ts';
import { SubmitRefused } from '../../wrapper/submit-client.ts';
import { WatchRefused } from '../../wrapper/watch.ts';
import { WhyError } from '../../wrapper/why.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('errors caas explains to its user', () => {
  const classes = {
    AnalysisError,
    BlueprintImportRefused,
    UnknownAnalysisError,
    UnknownComputeError,
    DatabaseUrlError,
    KeyRefused,
    StoreUrlError,
    UsageError,
    DispatchError,
    InvalidFilterError,
    CodeVersionError,
    JobSourceError,
    NoJobFolder,
    QueryError,
    RecordLookupError,
    RunRefused,
    SubmitRefused,
    WatchRefused,
    WhyError,
  };

  it.each(Object.entries(classes))('%s is a CaasError named after its class, exit code 2 (the input is at fault)', (name, Class) => {
    const error = new Class('x');
    expect(error).toBeInstanceOf(CaasError);
    expect(error.name).toBe(name);
    expect(exitCodeOf(error)).toBe(2);
  });

  it('anything else is a fault of caas or its surroundings: exit code 1', () => {
    expect(exitCodeOf(new Error('disk full'))).toBe(1);
    expect(exitCodeOf('a string')).toBe(1);
    expect(exitCodeOf(new CaasError('jobs failed', { exitCode: 1 }))).toBe(1);
  });

  it('no error class in the code base bypasses CaasError', () => {
    const offenders: string[] = [];
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        // unit-filter is an analysis repository of its own: it does not import caas.
        if (entry.isDirectory() && entry.name !== 'node_modules' && entry.name !== 'unit-filter') walk(full);
        else if (entry.isFile() && entry.name.endsWith('.ts') && full !== path.join(ROOT, 'models', 'caas-error.ts')) {
          readFileSync(full, 'utf8')
            .split('\n')
            .forEach((line, i) => {
              if (/class \w+ extends (Error|TypeError|RangeError)\b/.test(line)) offenders.push(`${path.relative(ROOT, full)}:${i + 1}`);
            });
        }
      }
    };
    for (const folder of ['models', 'analyses', 'backends', 'wrapper', 'dispatcher', 'cli']) walk(path.join(ROOT, folder));
    expect(offenders).toEqual([]);
  });
});
