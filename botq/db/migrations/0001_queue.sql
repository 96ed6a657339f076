-- The task queue, its status counters and the activity log.

CREATE TYPE botq_task_status AS ENUM ('pending', 'running', 'completed', 'failed', 'cancelled');
CREATE TYPE botq_priority AS ENUM ('high', 'normal', 'low');
CREATE TYPE botq_log_level AS ENUM ('debug', 'info', 'warning', 'error');

CREATE TABLE botq_tasks (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type             text NOT NULL,
    status           botq_task_status NOT NULL DEFAULT 'pending',
    priority         botq_priority NOT NULL DEFAULT 'normal',
    payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
    result           jsonb,
    error            text,
    traceback        text,
    errors           jsonb NOT NULL DEFAULT '[]'::jsonb,  -- one entry per failed attempt
    progress         real NOT NULL DEFAULT 0,
    progress_message text NOT NULL DEFAULT '',
    attempts         integer NOT NULL DEFAULT 0,
    max_retries      integer NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
    run_after        timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    heartbeat_at     timestamptz,
    lease_expires_at timestamptz,
    lease_token      uuid,
    worker_id        text,
    cancel_requested boolean NOT NULL DEFAULT false,
    -- a parent whose own work is done and that completes when its children have finished
    waiting_children boolean NOT NULL DEFAULT false,
    parent_id        bigint REFERENCES botq_tasks (id) ON DELETE SET NULL,
    dedupe_key       text
);

-- Claiming: the next pending task by priority, then age, read in index order so that a claim
-- stops after `limit` rows however many tasks wait. (No index on run_after: the planner would
-- pick it and sort every pending task; delayed tasks are few and simply skipped.)
CREATE INDEX botq_tasks_claim ON botq_tasks (priority, id) WHERE status = 'pending';
-- Lease expiry and stale-task recovery.
CREATE INDEX botq_tasks_lease ON botq_tasks (lease_expires_at) WHERE status = 'running';
-- Listing by status / type, newest first; purge by age.
CREATE INDEX botq_tasks_status ON botq_tasks (status, id);
CREATE INDEX botq_tasks_type ON botq_tasks (type, id);
CREATE INDEX botq_tasks_finished ON botq_tasks (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX botq_tasks_parent ON botq_tasks (parent_id, status) WHERE parent_id IS NOT NULL;
CREATE UNIQUE INDEX botq_tasks_dedupe ON botq_tasks (dedupe_key) WHERE dedupe_key IS NOT NULL;

-- Task counts by status, kept by statement-level triggers so that counts() reads a handful of
-- rows however many tasks the table holds. Rows are spread over shards (by backend) so that
-- concurrent workers do not queue on one counter row.
CREATE TABLE botq_task_counts (
    status botq_task_status NOT NULL,
    shard  smallint NOT NULL,
    n      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (status, shard)
);

CREATE FUNCTION botq_count_delta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO botq_task_counts AS c (status, shard, n)
        SELECT status, pg_backend_pid() % 16, count(*) FROM new_rows GROUP BY status ORDER BY status
        ON CONFLICT (status, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO botq_task_counts AS c (status, shard, n)
        SELECT status, pg_backend_pid() % 16, -count(*) FROM old_rows GROUP BY status ORDER BY status
        ON CONFLICT (status, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSE
        INSERT INTO botq_task_counts AS c (status, shard, n)
        SELECT status, pg_backend_pid() % 16, sum(d) FROM (
            SELECT status, -1 AS d FROM old_rows
            UNION ALL
            SELECT status, 1 AS d FROM new_rows
        ) delta
        GROUP BY status HAVING sum(d) <> 0 ORDER BY status
        ON CONFLICT (status, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER botq_tasks_count_insert AFTER INSERT ON botq_tasks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION botq_count_delta();
CREATE TRIGGER botq_tasks_count_update AFTER UPDATE ON botq_tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION botq_count_delta();
CREATE TRIGGER botq_tasks_count_delete AFTER DELETE ON botq_tasks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION botq_count_delta();

-- New tasks wake idle workers: one notification per statement, whatever the batch size.
CREATE FUNCTION botq_notify_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('botq_tasks', '');
    RETURN NULL;
END $$;

CREATE TRIGGER botq_tasks_notify AFTER INSERT ON botq_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION botq_notify_new();

CREATE TABLE botq_activity (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    category text NOT NULL,
    level    botq_log_level NOT NULL DEFAULT 'info',
    event    text NOT NULL,
    details  jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX botq_activity_at ON botq_activity (at);
CREATE INDEX botq_activity_category ON botq_activity (category, at);
