# syntax=docker/dockerfile:1
#
# Impact: impactd (the server) and impactctl (the ops CLI), static binaries on
# a distroless, non-root base. No secret is baked in: the pepper, the JWKS and
# the Redis URL come from the environment or mounted files at run time.
#
#   docker build -t impact:dev .
#   docker run --rm -p 8080:8080 -p 9090:9090 impact:dev --dev   # try it
#
# --dev keeps its keys in the container (lost on exit); see deploy/kubernetes
# for a production setup.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
# Set by BuildKit from --platform (cross-compiled: no emulation needed).
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w -buildid=" -o /out/ ./cmd/impactd ./cmd/impactctl

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/impactd /out/impactctl /usr/local/bin/
# nonroot (65532): the default embedded data dir is ./impact-data, under the
# user's home; mount a volume there to keep it.
USER 65532:65532
WORKDIR /home/nonroot
# Patient listeners: REST (and /healthz, /readyz, the web page) and gRPC. The
# ops listeners (9091, 8081) stay on loopback unless configured otherwise.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/impactd"]
