# The usage-metering image: `metering consume` (the default) runs the KCL MultiLangDaemon on Java 17
# with our Python record processors; every other `metering` subcommand runs from it too.
#
#   docker build -t complical-usage-metering .                                   # ECS (ecs/consumer.yaml)
#   docker build --build-arg EXTRAS=local -t complical-usage-metering:local .    # + the AWS emulator
#
# EXTRAS=local adds moto and hypercorn for `metering local-aws` (docker-compose.yml builds it so);
# the production image leaves them out.

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    UV_PROJECT_ENVIRONMENT=/opt/metering UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy UV_NO_CACHE=1 \
    UV_NATIVE_TLS=1
WORKDIR /src
# uv, pinned with hashes; then exactly the versions uv.lock records (hashes checked), nothing else.
COPY bin/uv-requirements.txt bin/
RUN python -m pip install --require-hashes --no-deps -r bin/uv-requirements.txt
COPY pyproject.toml uv.lock ./
COPY contract/ contract/
COPY reads/ reads/
COPY authorizer/ authorizer/
COPY consumer/ consumer/
COPY metering/ metering/
ARG EXTRAS=""
# A regular install, not editable: the KCL jars come inside the kclpy-ext wheel.
RUN uv sync --frozen --no-editable --python "$(command -v python)" ${EXTRAS:+--extra "$EXTRAS"}
# consumer/daemon.py reads the KCL properties from `<package>/../properties`, which for an
# installed package is site-packages/properties. Copy them exactly where it looks, and fail the
# build if the daemon would not find them or the KCL jars. `-P`: not /src/consumer, the installed one.
COPY properties/ /src/properties/
RUN properties="$(/opt/metering/bin/python -P -c 'from consumer import daemon; print(daemon.PROPERTIES_DIR)')" \
    && jars="$(/opt/metering/bin/python -P -c 'from consumer import daemon; print(daemon.JARS_DIR)')" \
    && cp -r /src/properties "$properties" \
    && test -f "$properties/consumer.properties" && test -f "$properties/logback.xml" \
    && ls "$jars"/*.jar > /dev/null

FROM python:3.11-slim-bookworm
# The slim image has no man directories, and the JRE's post-install script links man pages there.
# Not pinned: Debian replaces a security-fixed JRE version, so a pin would break rebuilds.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 metering \
    && useradd --system --uid 10001 --gid metering --create-home --home-dir /home/metering \
        --shell /usr/sbin/nologin metering
COPY --from=build /opt/metering /opt/metering
ENV PATH=/opt/metering/bin:$PATH PYTHONDONTWRITEBYTECODE=1
WORKDIR /home/metering
# Numeric, so that a runtime can verify the user is not root (e.g. Kubernetes runAsNonRoot).
USER 10001:10001

# `metering consume` forwards SIGTERM to the JVM, whose shutdown hook gives every record processor
# SHUTDOWN_GRACE_SECONDS to flush and checkpoint: give the container more than that to stop
# (ECS stopTimeout, compose stop_grace_period). Run it under an init (ECS initProcessEnabled,
# compose `init: true`) so that orphaned processes are reaped.
STOPSIGNAL SIGTERM
# No HEALTHCHECK here: the image runs every `metering` subcommand, and only `consume` serves
# /healthz (on METRICS_PORT). The consumer's check is declared where it runs: ecs/consumer.yaml,
# docker-compose.yml.
ENTRYPOINT ["metering"]
CMD ["consume"]
