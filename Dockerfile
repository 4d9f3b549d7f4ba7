# tiw-emulator as a container, for teams without Python and for CI service containers.
#
#   docker build -t tiw-emulator .
#   docker run --rm -p 127.0.0.1:8765:8765 -v tiw-state:/var/lib/tiw-emulator \
#       -e TIW_EMULATOR_CALLBACK_URL=http://host.docker.internal:8000/tiw/callback tiw-emulator
#
# Every setting comes from TIW_EMULATOR_* environment variables (see the README). BASE may be
# any image with python3 (>= 3.11) and its venv module; both stages must use the same one.
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
# Extras to install with the wheel, comma-separated: the PostgreSQL store by default, so
# `TIW_EMULATOR_DB=postgresql://...` works in the image ("" leaves it out).
ARG EXTRAS="postgres"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
COPY . /src
# Build the project's wheel, install it (and its dependencies) into a virtual environment, then
# drop the installers: the runtime stage copies only the environment.
RUN python3 -m venv /opt/tiw-emulator \
    && /opt/tiw-emulator/bin/pip wheel --no-deps --wheel-dir /dist /src \
    && wheel="$(echo /dist/tiw_emulator-*.whl)" \
    && /opt/tiw-emulator/bin/pip install "${wheel}${EXTRAS:+[$EXTRAS]}" \
    && /opt/tiw-emulator/bin/pip uninstall --yes --quiet setuptools pip \
    && /opt/tiw-emulator/bin/tiw-emulator --version

FROM ${BASE}
LABEL org.opencontainers.image.title="tiw-emulator" \
      org.opencontainers.image.description="Local emulator of Tencent Cloud TIW after-class recording callbacks" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /opt/tiw-emulator /opt/tiw-emulator
RUN groupadd --gid 10001 tiw \
    && useradd --uid 10001 --gid tiw --no-create-home --no-log-init \
        --home-dir /var/lib/tiw-emulator --shell /usr/sbin/nologin tiw \
    && install --directory --owner tiw --group tiw --mode 0750 /var/lib/tiw-emulator
ENV PATH=/opt/tiw-emulator/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TIW_EMULATOR_HOST=0.0.0.0 \
    TIW_EMULATOR_PORT=8765 \
    TIW_EMULATOR_DB=/var/lib/tiw-emulator/tiw-emulator.db
# Tasks, deliveries, rules and user scenarios live in the SQLite file here.
VOLUME /var/lib/tiw-emulator
WORKDIR /var/lib/tiw-emulator
USER tiw:tiw
EXPOSE 8765
# http.client, not urllib: an HTTP(S)_PROXY in the environment must not catch 127.0.0.1.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python3", "-c", "import http.client as h, os; c = h.HTTPConnection('127.0.0.1', int(os.environ.get('TIW_EMULATOR_PORT') or 8765), timeout=2); c.request('GET', '/healthz'); raise SystemExit(c.getresponse().status != 200)"]
ENTRYPOINT ["tiw-emulator"]
CMD ["serve"]
