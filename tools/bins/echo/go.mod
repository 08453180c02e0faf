// Builds the Gateway API conformance suite's echo server (echo-basic) for the sandbox node, from
// the conformance module of the gateway-api version the product pins.
// Kept apart from the product module so that go.mod there stays clean.
module github.com/crossgate-io/crossgate/tools/bins/echo

go 1.26.0

require sigs.k8s.io/gateway-api/conformance v1.6.3

require (
	golang.org/x/net v0.55.0 // indirect
	golang.org/x/sys v0.45.0 // indirect
	golang.org/x/text v0.37.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260427160629-7cedc36a6bc4 // indirect
	google.golang.org/grpc v1.81.1 // indirect
	google.golang.org/protobuf v1.36.12-0.20260120151049-f2248ac996af // indirect
)
