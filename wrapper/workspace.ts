/** Where the records and the results live, as the command line named them. */
export interface Workspace {
  home: string;
  storeUrl: string;
  dbUrl: string;
  s3Endpoint?: string;
}
