# One image for every stage: `lanscope run --stage <name>` picks the stage.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY lanscope ./lanscope
COPY schemas ./schemas
COPY producers ./producers
COPY enrichers ./enrichers
COPY sinks ./sinks
COPY config.yaml /etc/lanscope/config.yaml
RUN pip install --no-cache-dir . && mkdir -p /var/lib/lanscope
ENV LANSCOPE_DATA_DIR=/var/lib/lanscope
ENTRYPOINT ["lanscope", "--config", "/etc/lanscope/config.yaml"]
CMD ["run"]
