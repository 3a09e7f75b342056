# edgeproxy container: config at /etc/edgeproxy/rules.yaml, state in the /data volume.
# .ci/run repeats the build stage's install steps, since CI has no Docker engine.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY edgeproxy ./edgeproxy
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
# git serves `git push` deploys (git http-backend) and runs the builds' checkouts.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home edge \
    && mkdir -p /data /etc/edgeproxy \
    && chown edge:edge /data
COPY --from=build /install /usr/local
COPY rules.yaml rules.schema.json /etc/edgeproxy/
COPY sites /etc/edgeproxy/sites
USER edge
WORKDIR /data
VOLUME ["/data"]
ENV EDGEPROXY_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/_edge/health', timeout=2)"]
ENTRYPOINT ["edgeproxy"]
CMD ["serve", "--config", "/etc/edgeproxy/rules.yaml", "--state-dir", "/data"]
