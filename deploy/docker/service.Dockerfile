# One image recipe for every Go binary of the workspace.
#
#   docker build -f deploy/docker/service.Dockerfile --build-arg SERVICE=menu \
#     --build-arg VERSION="$(git describe --tags --always --dirty)" -t pizzashop/menu .
#
# SERVICE is one of: menu | order | kitchen | delivery | gateway.
# The build context is the repository root (go.work lives there); .dockerignore
# keeps .git, data and tool outputs out of it. Needs BuildKit (the default
# builder since Docker 23 and the only one docker compose uses) for the cache
# mounts. Multi-arch works natively: the build stage runs on the build
# platform and cross-compiles for TARGETOS/TARGETARCH.
#
# No HEALTHCHECK on purpose: the final image has no shell and no probe binary.
# Health is checked from outside: Kubernetes uses its built-in gRPC probe
# (grpc.health.v1 on :9090) and httpGet /healthz, /readyz for the gateway.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0 \
    GOFLAGS=-buildvcs=false

# Modules are resolved from the workspace (go.work + every member's go.mod).
# The module and build caches are BuildKit cache mounts shared by the five
# builds, so each dependency is downloaded and compiled once per builder and
# only the packages the chosen binary imports are fetched (a workspace-wide
# `go mod download` would pull the embedded-store dependencies of
# cmd/pizzashop into every service image build). A module added to go.work
# needs no change here.
COPY . .

ARG SERVICE
# Stamped into pkg/app.Version like `make build` does (e.g. git describe).
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    set -eu; \
    case "${SERVICE:-}" in \
      menu|order|kitchen|delivery) pkg="./services/${SERVICE}" ;; \
      gateway) pkg="./gateway" ;; \
      *) echo "build arg SERVICE must be one of menu|order|kitchen|delivery|gateway (got '${SERVICE:-}')" >&2; exit 1 ;; \
    esac; \
    GOOS="${TARGETOS:-linux}" GOARCH="${TARGETARCH:-amd64}" \
      go build -trimpath \
        -ldflags="-s -w -X github.com/pizzashop/pizzashop/pkg/app.Version=${VERSION}" \
        -o /out/app "$pkg"

FROM gcr.io/distroless/static-debian12:nonroot
ARG SERVICE
LABEL org.opencontainers.image.title="pizzashop-${SERVICE}" \
      org.opencontainers.image.description="Pizzashop ${SERVICE}"
COPY --from=build /out/app /app
USER nonroot:nonroot
ENTRYPOINT ["/app"]
