# One image for the Python services; docker-compose.yml picks the entry point (`python -m ...`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The library and its dependencies come from pyproject.toml (the "web" extra for the web consumer);
# the services themselves run from /app, where `python -m <service>` finds them.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pgsubscriber/ pgsubscriber/
RUN pip install ".[web]" && rm -rf /src

WORKDIR /app
COPY db_migrations/ db_migrations/
COPY producer/ producer/
COPY webconsumer/ webconsumer/
COPY purger/ purger/

RUN groupadd --system --gid 10001 app && useradd --system --uid 10001 --gid app --no-create-home app
USER app

# No password here: every connection string comes from the environment (see .env.example).
CMD ["python", "-m", "webconsumer"]
