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
