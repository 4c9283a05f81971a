/**
 * Runs `work` on the items in their order, at most `limit` at a time, and takes no new item once
 * `stop()` says so (items already started finish). A rejection of `work` rejects the whole pool
 * while the other workers carry on with their current item: callers that need every item done
 * catch per item.
 */
export async function forEachAtMost<T>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<void>,
  stop: () => boolean = () => false,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length && !stop()) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

/**
 * `forEachAtMost` over items that arrive one by one (a plan read back from its file): the workers
 * take the next item as they finish one, so no more than `limit` items are out of the source at once.
 */
export async function forEachOfAtMost<T>(
  items: AsyncIterable<T>,
  limit: number,
  work: (item: T) => Promise<void>,
  stop: () => boolean = () => false,
): Promise<void> {
  const source = items[Symbol.asyncIterator]();
  let exhausted = false;
  const worker = async () => {
    while (!exhausted && !stop()) {
      const next = await source.next();
      if (next.done) {
        exhausted = true;
        return;
      }
      await work(next.value);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, limit) }, worker));
  } finally {
    // Stopped early: the source's file is closed, not left open until the process ends.
    if (!exhausted) await source.return?.();
  }
}
