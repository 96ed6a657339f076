-- Every state change is one guarded statement; writes from a worker carry its lease token, so
-- a worker that lost its lease (presumed dead, then woke up) changes nothing.

-- name: enqueue
INSERT INTO botq_tasks (type, payload, priority, max_retries, run_after, dedupe_key, parent_id)
VALUES (%(type)s, %(payload)s::jsonb, %(priority)s, %(max_retries)s, coalesce(%(run_after)s, now()),
        %(dedupe_key)s, %(parent_id)s)
ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
RETURNING id

-- name: id_by_dedupe_key
SELECT id FROM botq_tasks WHERE dedupe_key = %(dedupe_key)s

-- name: enqueue_many
-- `items` is one JSON array of [type, payload] pairs: one document to encode and to parse.
INSERT INTO botq_tasks (type, payload, priority, max_retries, parent_id)
SELECT t.item ->> 0, t.item -> 1, %(priority)s, %(max_retries)s, %(parent_id)s
FROM jsonb_array_elements(%(items)s::jsonb) WITH ORDINALITY AS t (item, n)
ORDER BY t.n
RETURNING id

-- name: get
SELECT * FROM botq_tasks WHERE id = %(id)s

-- name: list_all
SELECT * FROM botq_tasks
WHERE (%(type)s::text IS NULL OR type = %(type)s)
ORDER BY id DESC LIMIT %(limit)s

-- name: list_by_status
SELECT * FROM botq_tasks
WHERE status = ANY(%(statuses)s::botq_task_status[])
  AND (%(type)s::text IS NULL OR type = %(type)s)
ORDER BY id DESC LIMIT %(limit)s

-- name: counts
SELECT status::text, sum(n)::bigint FROM botq_task_counts GROUP BY status

-- name: counts_exact
SELECT status::text, count(*) FROM botq_tasks GROUP BY status

-- name: children_counts
SELECT status::text, count(*) FROM botq_tasks WHERE parent_id = %(id)s GROUP BY status

-- name: cancel
-- A pending task is cancelled at once; a running one is asked to stop (its handler sees
-- ctx.cancelled); a parent waiting for its children is cancelled at once; children of the
-- task (bulk runs) are cancelled with it. The rows are locked FOR NO KEY UPDATE (what the
-- UPDATE takes anyway), which does not wait for the key-share locks that inserts referencing
-- them hold (a child being enqueued, a backtest run being saved): FOR UPDATE did, and
-- deadlocked with such an insert when it locked the parent and the child in the other order.
WITH target AS (
    SELECT id, status FROM botq_tasks
    WHERE (id = %(id)s OR parent_id = %(id)s) AND status IN ('pending', 'running')
    FOR NO KEY UPDATE
), done AS (
    UPDATE botq_tasks t
    SET status = CASE WHEN target.status = 'pending' OR t.waiting_children
                      THEN 'cancelled'::botq_task_status ELSE t.status END,
        finished_at = CASE WHEN target.status = 'pending' OR t.waiting_children THEN now()
                           ELSE t.finished_at END,
        waiting_children = false,
        cancel_requested = true
    FROM target WHERE t.id = target.id
    RETURNING t.id, t.status::text
)
SELECT id, status, pg_notify('botq_cancel', id::text) FROM done

-- name: retry
UPDATE botq_tasks
SET status = 'pending', run_after = now(), attempts = 0, cancel_requested = false,
    error = NULL, traceback = NULL, result = NULL, finished_at = NULL, started_at = NULL,
    progress = 0, progress_message = '', lease_token = NULL, worker_id = NULL
WHERE id = %(id)s AND status IN ('failed', 'cancelled')
RETURNING id, pg_notify('botq_tasks', '')

-- name: claim
WITH next AS (
    SELECT id FROM botq_tasks
    WHERE status = 'pending' AND run_after <= now()
      AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
    ORDER BY priority, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE botq_tasks t
SET status = 'running', attempts = t.attempts + 1, started_at = now(), heartbeat_at = now(),
    lease_expires_at = now() + make_interval(secs => %(lease_s)s), lease_token = gen_random_uuid(),
    worker_id = %(worker_id)s, progress = 0, progress_message = ''
FROM next WHERE t.id = next.id
RETURNING t.id, t.type, t.priority::text, t.payload, t.attempts, t.max_retries, t.run_after,
          t.created_at, t.started_at, t.parent_id, t.dedupe_key, t.lease_token::text

-- name: next_due
SELECT extract(epoch FROM min(run_after) - now()) FROM botq_tasks WHERE status = 'pending'

-- name: finish
-- Batched end of attempts: completed, cancelled, failed for good, back to pending for a retry
-- (run_after pushed out by the backoff the worker computed), or waiting: a parent whose own
-- work is done stays running, held by no worker, until its children finish (settle_parents).
-- A task asked to stop is not retried: an attempt that failed before its worker saw the
-- request (a race with cancel) ends cancelled. A parent that ends cancelled, or waits though
-- asked to stop, cancels the children that its cancel could not see yet (enqueued by the
-- handler while the cancel ran) and asks its running ones to stop.
WITH f AS (
    SELECT * FROM jsonb_to_recordset(%(outcomes)s::jsonb)
        AS f (id bigint, token uuid, status text, result jsonb, error text, traceback text,
              delay_s float8)
), fin AS (
    UPDATE botq_tasks t
    SET status = (CASE WHEN f.status = 'waiting' THEN 'running'
                       WHEN f.status = 'pending' AND t.cancel_requested THEN 'cancelled'
                       ELSE f.status END)::botq_task_status,
        waiting_children = f.status = 'waiting',
        worker_id = CASE WHEN f.status = 'waiting' THEN NULL ELSE t.worker_id END,
        result = f.result,
        error = f.error,
        traceback = f.traceback,
        errors = CASE WHEN f.error IS NULL THEN t.errors
                      ELSE t.errors || jsonb_build_array(jsonb_build_object(
                          'attempt', t.attempts, 'at', now(), 'error', f.error)) END,
        run_after = CASE WHEN f.status = 'pending' THEN now() + make_interval(secs => f.delay_s)
                         ELSE t.run_after END,
        finished_at = CASE WHEN f.status = 'waiting'
                             OR (f.status = 'pending' AND NOT t.cancel_requested) THEN NULL
                           ELSE now() END,
        progress = CASE WHEN f.status = 'completed' THEN 1 ELSE t.progress END,
        lease_token = NULL, lease_expires_at = NULL
    FROM f
    WHERE t.id = f.id AND t.lease_token = f.token AND t.status = 'running'
    RETURNING t.id, t.status::text AS status, t.type, t.error, t.attempts, t.parent_id,
              t.waiting_children, t.cancel_requested
), orphans AS (
    UPDATE botq_tasks c
    SET status = CASE WHEN c.status = 'pending' THEN 'cancelled'::botq_task_status
                      ELSE c.status END,
        finished_at = CASE WHEN c.status = 'pending' THEN now() ELSE c.finished_at END,
        cancel_requested = true
    FROM fin
    WHERE c.parent_id = fin.id AND fin.cancel_requested
      AND (fin.status = 'cancelled' OR fin.waiting_children)
      AND c.status IN ('pending', 'running') AND NOT c.cancel_requested
      AND c.id NOT IN (SELECT id FROM f)
    RETURNING c.id
)
SELECT id, status, type, error, attempts, parent_id, waiting_children FROM fin

-- name: settle_parents
-- Parents waiting for children: progress = finished children / children; once all have
-- finished the parent completes (or is cancelled, if asked), its result extended with counts.
WITH parents AS (
    SELECT unnest(%(ids)s::bigint[]) AS id
), kids AS (
    SELECT p.id,
           count(c.id) AS total,
           count(c.id) FILTER (WHERE c.status IN ('completed', 'failed', 'cancelled')) AS done,
           count(c.id) FILTER (WHERE c.status = 'failed') AS failed,
           count(c.id) FILTER (WHERE c.status = 'cancelled') AS cancelled
    FROM parents p LEFT JOIN botq_tasks c ON c.parent_id = p.id
    GROUP BY p.id
)
UPDATE botq_tasks p
SET progress = CASE WHEN kids.total = 0 THEN 1 ELSE kids.done::real / kids.total END,
    progress_message = kids.done || '/' || kids.total || ' children finished',
    status = CASE WHEN kids.done < kids.total THEN p.status
                  WHEN p.cancel_requested THEN 'cancelled'::botq_task_status
                  ELSE 'completed'::botq_task_status END,
    finished_at = CASE WHEN kids.done < kids.total THEN NULL ELSE now() END,
    waiting_children = kids.done < kids.total,
    result = CASE WHEN kids.done < kids.total THEN p.result
                  ELSE coalesce(p.result, '{}'::jsonb) || jsonb_build_object(
                      'children', kids.total, 'children_failed', kids.failed,
                      'children_cancelled', kids.cancelled) END
FROM kids
WHERE p.id = kids.id AND p.status = 'running' AND p.waiting_children
RETURNING p.id, p.status::text

-- name: release
-- Hand claimed tasks back (graceful stop, prefetched work not started): no attempt counted.
-- Tasks asked to stop meanwhile are cancelled instead (here and below: what goes back to
-- pending is run again, and nothing would cancel it any more).
UPDATE botq_tasks t
SET status = (CASE WHEN t.cancel_requested THEN 'cancelled' ELSE 'pending' END)::botq_task_status,
    finished_at = CASE WHEN t.cancel_requested THEN now() END,
    attempts = greatest(t.attempts - 1, 0), lease_token = NULL,
    lease_expires_at = NULL, worker_id = NULL, started_at = NULL
FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS r (id, token)
WHERE t.id = r.id AND t.lease_token = r.token AND t.status = 'running'
RETURNING t.id, t.status::text, t.parent_id, pg_notify('botq_tasks', '')

-- name: release_started
-- Hand back tasks whose handler did not finish before a graceful stop's timeout: the attempt
-- counts, the task runs again at once elsewhere.
UPDATE botq_tasks t
SET status = (CASE WHEN t.cancel_requested THEN 'cancelled' ELSE 'pending' END)::botq_task_status,
    finished_at = CASE WHEN t.cancel_requested THEN now() END,
    lease_token = NULL, lease_expires_at = NULL, worker_id = NULL,
    run_after = now(), error = 'released: worker stopped before the task finished'
FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS r (id, token)
WHERE t.id = r.id AND t.lease_token = r.token AND t.status = 'running'
RETURNING t.id, t.status::text, t.parent_id, pg_notify('botq_tasks', '')

-- name: heartbeat
-- Extend leases, write progress, and report which tasks were asked to stop.
UPDATE botq_tasks t
SET heartbeat_at = now(), lease_expires_at = now() + make_interval(secs => %(lease_s)s),
    progress = coalesce(h.progress, t.progress),
    progress_message = coalesce(h.message, t.progress_message)
FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[], %(progress)s::real[], %(messages)s::text[])
     AS h (id, token, progress, message)
WHERE t.id = h.id AND t.lease_token = h.token AND t.status = 'running'
RETURNING t.id, t.cancel_requested

-- name: expire_leases
-- Tasks whose worker stopped heartbeating: back to pending (the attempt counted at claim), or
-- failed when no retry is left, or cancelled when asked to stop.
UPDATE botq_tasks
SET status = CASE WHEN cancel_requested THEN 'cancelled'::botq_task_status
                  WHEN attempts > max_retries THEN 'failed'::botq_task_status
                  ELSE 'pending'::botq_task_status END,
    finished_at = CASE WHEN cancel_requested OR attempts > max_retries THEN now() END,
    error = 'lease expired: worker ' || coalesce(worker_id, '?') || ' stopped heartbeating',
    errors = errors || jsonb_build_array(jsonb_build_object('attempt', attempts, 'at', now(),
        'error', 'lease expired: worker ' || coalesce(worker_id, '?') || ' stopped heartbeating')),
    lease_token = NULL, lease_expires_at = NULL, run_after = now()
WHERE status = 'running' AND lease_expires_at < now()
RETURNING id, type, status::text, worker_id, parent_id

-- name: recover_stale
UPDATE botq_tasks
SET status = (CASE WHEN cancel_requested THEN 'cancelled' ELSE 'pending' END)::botq_task_status,
    finished_at = CASE WHEN cancel_requested THEN now() END,
    lease_token = NULL, lease_expires_at = NULL, run_after = now(),
    error = 'recovered: running for longer than ' || %(running_for_s)s || ' s'
WHERE status = 'running' AND NOT waiting_children
  AND started_at < now() - make_interval(secs => %(running_for_s)s)
RETURNING id, type, worker_id, status::text, parent_id

-- name: purge
WITH gone AS (
    DELETE FROM botq_tasks
    WHERE id IN (
        SELECT id FROM botq_tasks
        WHERE status IN ('completed', 'failed', 'cancelled')
          AND finished_at < now() - make_interval(secs => %(older_than_s)s)
        LIMIT %(batch)s
    )
    RETURNING 1
)
SELECT count(*) FROM gone
