import type { StoreSettings } from '../backends/storage/index.ts';

/** Where the records and the results live, as the command line named them. */
export interface Workspace {
  home: string;
  storeUrl: string;
  dbUrl: string;
  /** What the store kinds' own flags and variables said (--s3-endpoint, ...), for stores a URL leaves unsaid. */
  storeSettings?: StoreSettings;
}
