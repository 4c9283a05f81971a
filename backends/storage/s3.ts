import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Readable, pipeline as streamPipeline } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  type BucketLocationConstraint,
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { shellQuote } from '../../models/shell-quote.ts';
import {
  type Body,
  type ObjectInfo,
  type ObjectStore,
  Sha256PassThrough,
  type StoreCapability,
  type StoredFile,
  type StoreOptions,
  storeUrlWith,
} from './index.ts';

const PART_SIZE = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT = 4;

/**
 * What a standard AWS client (the aws CLI, boto3, the SDKs) reads to find credentials, region and
 * endpoint. On EC2 the instance role serves credentials through the metadata service instead.
 */
const AWS_CLIENT_VARIABLES =
  /^AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN|PROFILE|DEFAULT_PROFILE|REGION|DEFAULT_REGION|CONFIG_FILE|SHARED_CREDENTIALS_FILE|CA_BUNDLE|ROLE_ARN|ROLE_SESSION_NAME|WEB_IDENTITY_TOKEN_FILE|CONTAINER_CREDENTIALS_RELATIVE_URI|CONTAINER_CREDENTIALS_FULL_URI|CONTAINER_AUTHORIZATION_TOKEN|EC2_METADATA_DISABLED|ENDPOINT_URL|ENDPOINT_URL_S3|USE_FIPS_ENDPOINT|USE_DUALSTACK_ENDPOINT)$/;

export interface S3StoreOptions extends StoreOptions {
  /** An S3-compatible server (path-style), e.g. http://127.0.0.1:4569; AWS's S3 without it. */
  endpoint?: string;
  /**
   * Keys per ListObjectsV2 request (MaxKeys), 1 to 1000. Default: none sent, so S3 pages at 1000;
   * a smaller page lets a test see list() follow its continuation tokens over a few keys.
   */
  listPageSize?: number;
}

/**
 * Amazon S3 or any S3-compatible server (path-style) when an endpoint is given. list() reads a
 * prefix page by page (1000 keys a page, or `listPageSize`), following the continuation tokens.
 */
export class S3Store implements ObjectStore {
  readonly scheme = 's3';
  readonly url: string;
  readonly capabilities: ReadonlySet<StoreCapability>;
  readonly region: string;
  readonly endpoint: string | undefined;
  private readonly client: S3Client;
  private readonly listPageSize: number | undefined;

  constructor(_url: string, options: S3StoreOptions) {
    const { listPageSize } = options;
    if (listPageSize !== undefined && !(Number.isInteger(listPageSize) && listPageSize >= 1 && listPageSize <= 1000))
      throw new Error(`listPageSize ${listPageSize}: expected a whole number from 1 to 1000`);
    this.listPageSize = listPageSize;
    this.region = process.env.AWS_REGION || 'us-east-1';
    this.endpoint = options.endpoint || undefined;
    this.url = storeUrlWith('s3://', this.endpoint ? { endpoint: this.endpoint } : {});
    // S3 has honoured If-None-Match since 2024; a compatible server may not (s3rver ignores it).
    this.capabilities = new Set<StoreCapability>(this.endpoint ? [] : ['atomic-put-if-absent']);
    this.client = new S3Client({
      region: this.region,
      ...(this.endpoint
        ? {
            endpoint: this.endpoint,
            // S3-compatible servers rarely resolve bucket subdomains, and most of them (s3rver, older
            // MinIO) reject the flexible checksums the SDK sends by default since 2025.
            forcePathStyle: true,
            requestChecksumCalculation: 'WHEN_REQUIRED',
            responseChecksumValidation: 'WHEN_REQUIRED',
          }
        : // A bucket in another region answers with a redirect; follow it rather than fail.
          { followRegionRedirects: true }),
    });
  }

  async put(bucket: string, key: string, body: Body): Promise<void> {
    await this.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  }

  async putIfAbsent(bucket: string, key: string, body: Body): Promise<boolean> {
    // S3 has honoured If-None-Match on PUT since August 2024, which makes this atomic. s3rver and
    // some other compatible servers ignore the header and overwrite, so the HEAD first is what
    // protects them; there a writer that slips in between the HEAD and the PUT is overwritten.
    for (let attempt = 0; ; attempt++) {
      if (await this.head(bucket, key)) return false;
      try {
        await this.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, IfNoneMatch: '*' }));
        return true;
      } catch (error) {
        if (status(error) === 412) return false;
        // 409: another conditional write to this key was in flight; the next HEAD sees who won.
        if (status(error) === 409 && attempt < 3) continue;
        throw error;
      }
    }
  }

  async putFile(bucket: string, key: string, localPath: string): Promise<StoredFile> {
    // The callback form of pipeline hands a read error on to the measure, so the upload fails with
    // it; the error itself is reported by upload.done(), not here.
    const measure = streamPipeline(createReadStream(localPath), new Sha256PassThrough(), () => {});
    const upload = new Upload({
      client: this.client,
      params: { Bucket: bucket, Key: key, Body: measure },
      partSize: PART_SIZE,
      queueSize: PARTS_IN_FLIGHT,
    });
    try {
      await upload.done();
    } finally {
      // A failed upload stops reading; this closes the file rather than leaving it to the collector.
      measure.destroy();
    }
    return measure.stored();
  }

  async get(bucket: string, key: string): Promise<Buffer> {
    const stream = await this.getStream(bucket, key);
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  async getStream(bucket: string, key: string): Promise<Readable> {
    try {
      const response = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      if (!(response.Body instanceof Readable)) throw new Error(`S3 returned no readable body for ${key} in bucket ${bucket}`);
      return response.Body;
    } catch (error) {
      throw notFound(error, bucket, key);
    }
  }

  async getToFile(bucket: string, key: string, localPath: string): Promise<void> {
    const stream = await this.getStream(bucket, key);
    await mkdir(path.dirname(localPath), { recursive: true });
    await pipeline(stream, createWriteStream(localPath));
  }

  async head(bucket: string, key: string): Promise<ObjectInfo | undefined> {
    try {
      const response = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return { key, size: response.ContentLength ?? 0, etag: unquote(response.ETag), modified: response.LastModified ?? new Date(0) };
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  async *list(bucket: string, prefix: string): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token, MaxKeys: this.listPageSize }),
      );
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined) continue;
        yield { key: object.Key, size: object.Size ?? 0, etag: unquote(object.ETag), modified: object.LastModified ?? new Date(0) };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(bucket: string, key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  }

  async bucketExists(bucket: string): Promise<boolean> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: bucket }));
      return true;
    } catch (error) {
      if (isMissing(error)) return false;
      if (status(error) === 403)
        throw new Error(`bucket ${bucket} exists but these AWS credentials may not use it: check AWS_PROFILE or pick another bucket name`);
      throw error;
    }
  }

  async createBucket(bucket: string): Promise<void> {
    try {
      await this.client.send(
        new CreateBucketCommand({
          Bucket: bucket,
          // us-east-1 is the one region that rejects an explicit location constraint.
          ...(this.region === 'us-east-1'
            ? {}
            : { CreateBucketConfiguration: { LocationConstraint: this.region as BucketLocationConstraint } }),
        }),
      );
    } catch (error) {
      const name = (error as Error).name;
      if (name === 'BucketAlreadyOwnedByYou') return;
      // S3 says this when another account owns the name, but s3rver (and some other servers) say it
      // to the owner too; only a bucket we can reach counts as made.
      if (name === 'BucketAlreadyExists' && (await this.bucketExists(bucket))) return;
      if (name === 'BucketAlreadyExists') throw new Error(`bucket name ${bucket} is taken by another AWS account: pick another name`);
      throw error;
    }
  }

  copyCommand(bucket: string, prefix: string, to: string): string {
    return `aws s3 cp --recursive${this.endpointFlag()} ${shellQuote(`s3://${bucket}/${prefix}`)} ${shellQuote(to)}`;
  }

  createBucketHint(bucket: string): string {
    return `aws s3 mb${this.endpointFlag()} s3://${bucket}`;
  }

  environment(from: NodeJS.ProcessEnv): Record<string, string> {
    const env: Record<string, string> = {};
    for (const [name, value] of Object.entries(from)) if (value !== undefined && AWS_CLIENT_VARIABLES.test(name)) env[name] = value;
    // An `aws s3 cp` in the analysis must reach the server caas uses, not AWS.
    if (this.endpoint) env.AWS_ENDPOINT_URL_S3 = this.endpoint;
    return env;
  }

  private endpointFlag(): string {
    return this.endpoint ? ` --endpoint-url ${shellQuote(this.endpoint)}` : '';
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

function status(error: unknown): number | undefined {
  return error instanceof S3ServiceException ? error.$metadata.httpStatusCode : undefined;
}

/** HEAD responses carry no body, so a missing object or bucket is known only by its 404. */
function isMissing(error: unknown): boolean {
  const name = (error as Error | undefined)?.name;
  return status(error) === 404 || name === 'NotFound' || name === 'NoSuchKey' || name === 'NoSuchBucket';
}

/** The same error the file store throws, so callers test `code` and never the backend. */
function notFound(error: unknown, bucket: string, key: string): Error {
  if ((error as Error | undefined)?.name === 'NoSuchKey' || (status(error) === 404 && (error as Error).name !== 'NoSuchBucket'))
    return Object.assign(new Error(`no object ${key} in bucket ${bucket}`), { code: 'NoSuchKey' });
  return error as Error;
}

/** S3 quotes ETags on the wire; the file store's are bare md5 hex. */
function unquote(etag: string | undefined): string {
  return (etag ?? '').replace(/^"|"$/g, '');
}
