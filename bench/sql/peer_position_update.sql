UPDATE public.bench_consumer_position SET latest_id = %s WHERE consumer = 'bench'
