// Package sandbox starts real Kubernetes API servers on this machine, without containers: one
// etcd and one kube-apiserver per cluster (each cluster under its own etcd prefix), on free
// loopback ports, with every CRD of the chart installed and served.
//
// It is used by the integration tests and by `crossgate sandbox`. Every process it starts is
// ended by Stop, and also when the process that started it dies (a test binary that times out
// or is killed), so nothing is left behind.
//
// The binaries come from bin/ (`make bins`), or from $CROSSGATE_BIN_DIR.
package sandbox
