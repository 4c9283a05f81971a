import { z } from 'zod';

/**
 * What the analysts' page asks of `caas serve` beyond the job and record routes (docs/serve.md):
 * the catalog to pick datasets from, and a job's certificate.
 */

export const CatalogAsset = z
  .looseObject({
    _id: z.union([z.string(), z.number()]),
    name: z.string(),
    location: z.string(),
  })
  .describe('an AIND data-asset document of the catalog, as `caas catalog query` prints it');

export const CatalogAnswer = z
  .object({
    assets: z.array(CatalogAsset),
    more: z.boolean().describe('the catalog holds more matches than limit: narrow the filter'),
  })
  .strict();
export type CatalogAnswer = z.infer<typeof CatalogAnswer>;
