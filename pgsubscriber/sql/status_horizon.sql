-- `pgsubscriber status`: how far delivery may go now, and the NOTIFY queue usage.
SELECT h.safe_id, h.last_drawn_id, h.writers, h.blocking_pid, h.notify_queue_usage, pg_catalog.now()
FROM public.events_delivery_horizon() AS h
