# The crossgate-controller image. Built by the kind end-to-end suite (make e2e-kind) as
# crossgate-controller:e2e; a release builds it the same way.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags=-s -o /out/crossgate-controller ./cmd/crossgate-controller

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/crossgate-controller /crossgate-controller
USER 65532:65532
ENTRYPOINT ["/crossgate-controller"]
