FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
# Runtime dependencies only (no test or lint tools), each checked against its hash in the lock.
RUN pip install --no-cache-dir uv==0.13.8 && uv pip install --system --no-cache --require-hashes -r requirements.lock
COPY gateway gateway
COPY policies policies
COPY audit audit
COPY dashboard dashboard
RUN uv pip install --system --no-deps .
ENV LITELLM_LOCAL_MODEL_COST_MAP=True
USER nobody
EXPOSE 8080 8501
CMD ["warden", "serve", "--host", "0.0.0.0", "--port", "8080"]
