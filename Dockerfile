# mcpgw — one binary (oauthserver, extauthz, xds, migrate, keygen, dev).
#
# Multi-stage: build a static binary with the Go toolchain matching go.mod,
# then copy it into a small Debian image that has a shell (the compose
# entrypoint runs keygen/migrate before serve) and the CA bundle (the
# oauthserver fetches client metadata documents and provider metadata over
# TLS).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags="-s -w" -o /out/mcpgw ./cmd/mcpgw

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin mcpgw \
 && mkdir -p /keys && chown mcpgw /keys
COPY --from=build /out/mcpgw /usr/local/bin/mcpgw
USER mcpgw
# 8080 oauthserver HTTP, 9191 extauthz gRPC, 18000 xds ADS gRPC, 9090 metrics
EXPOSE 8080 9191 18000 9090
ENTRYPOINT ["/usr/local/bin/mcpgw"]
CMD ["serve"]
