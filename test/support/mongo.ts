import { MongoMemoryServer } from 'mongodb-memory-server-core';

export interface MongoForTests {
  /** Server URL; absent when no MongoDB is available, and then `reason` says why. */
  uri?: string;
  reason?: string;
  stop(): Promise<void>;
}

/**
 * A MongoDB server for tests: MONGODB_URI when set, else a throwaway mongod from
 * MONGOMS_SYSTEM_BINARY. Nothing is downloaded: without either the caller must skip, visibly.
 */
export async function mongoUri(): Promise<MongoForTests> {
  const given = process.env.MONGODB_URI;
  if (given) return { uri: given, stop: async () => {} };
  const binary = process.env.MONGOMS_SYSTEM_BINARY;
  if (!binary) {
    return {
      reason: 'MongoDB suite skipped: set MONGODB_URI or MONGOMS_SYSTEM_BINARY (mongod cannot be downloaded here)',
      stop: async () => {},
    };
  }
  const server = await MongoMemoryServer.create({ binary: { systemBinary: binary } });
  return { uri: server.getUri(), stop: async () => void (await server.stop()) };
}

/**
 * The same server with another database in the URL path, so each test gets a fresh one. When the
 * URL has credentials but no authSource, the original path database stays the one to log in to.
 */
export function withDatabase(uri: string, name: string): string {
  const match = /^(mongodb(?:\+srv)?:\/\/[^/?]*)(?:\/([^?]*))?(?:\?(.*))?$/.exec(uri);
  if (!match) throw new Error(`not a MongoDB URL: ${uri}`);
  const [, hosts = '', original = '', query = ''] = match;
  const params = new URLSearchParams(query);
  if (hosts.includes('@') && !params.has('authSource')) params.set('authSource', original === '' ? 'admin' : decodeURIComponent(original));
  const search = params.toString();
  return `${hosts}/${name}${search ? `?${search}` : ''}`;
}
