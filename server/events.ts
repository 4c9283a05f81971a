import type { SSEStreamingApi } from 'hono/streaming';
import type { Service } from './service.ts';
import type { Principal } from './tokens.ts';

export interface EventsOptions {
  /** Last-Event-ID of a client reconnecting: `{attempt}-{lines}`, what it has seen of the log. */
  resumeFrom?: string;
  intervalMs: number;
}

/**
 * Server-Sent Events of one job: `status` when its state, attempt or status file changes, `log`
 * for each new stdout line of its current attempt, and `end` once it is over (its record says
 * succeeded or failed after end.txt, or it was cancelled or refused). Every event's id is
 * `{attempt}-{lines}`: how much of which attempt's log the client has, so a client reconnecting
 * with Last-Event-ID gets only the lines it has not seen (a status is sent again: it is a state).
 */
export async function jobEvents(
  service: Service,
  identity: string,
  principal: Principal,
  stream: SSEStreamingApi,
  options: EventsOptions,
): Promise<void> {
  let closed = false;
  stream.onAbort(() => {
    closed = true;
  });
  const resume = /^(\d+)-(\d+)$/.exec(options.resumeFrom ?? '');
  let attempt = resume ? Number(resume[1]) : 0;
  let sent = resume ? Number(resume[2]) : 0;
  let lastStatus = '';
  while (!closed) {
    const status = await service.jobStatus(identity, principal);
    const { entry, record } = { entry: status.queue ?? undefined, record: status.record ?? undefined };
    const log = await service.logLines(record);
    if (log.attempt !== attempt) {
      // A new attempt writes a new job folder: its log starts from its first line.
      attempt = log.attempt;
      sent = 0;
    }
    const id = () => `${attempt}-${sent}`;
    const summary = JSON.stringify([status.state, status.attempts, status.status_file, entry?.state, entry?.reason]);
    if (summary !== lastStatus) {
      lastStatus = summary;
      const { record: _omitted, ...view } = status;
      await stream.writeSSE({ event: 'status', id: id(), data: JSON.stringify(view) });
    }
    for (const line of log.lines.slice(sent)) {
      sent++;
      await stream.writeSSE({ event: 'log', id: id(), data: line });
    }
    const over =
      status.state === 'cancelled' ||
      status.state === 'refused' ||
      ((status.state === 'succeeded' || status.state === 'failed') && entry?.state !== 'queued' && entry?.state !== 'taken');
    if (over) {
      await stream.writeSSE({
        event: 'end',
        id: id(),
        data: JSON.stringify({ state: status.state, end: status.end, record: status.record }),
      });
      return;
    }
    await stream.sleep(options.intervalMs);
  }
}
