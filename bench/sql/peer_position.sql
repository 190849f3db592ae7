-- The peer comparison's durable acknowledgement for the project: the consumer's position, one row,
-- updated in one autocommit transaction per handler call (fsync and synchronous_commit on).
CREATE TABLE IF NOT EXISTS public.bench_consumer_position (
    consumer text PRIMARY KEY,
    latest_id bigint NOT NULL
);
INSERT INTO public.bench_consumer_position (consumer, latest_id) VALUES ('bench', 0)
ON CONFLICT (consumer) DO NOTHING;
