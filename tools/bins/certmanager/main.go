// Command cert-manager-controller runs cert-manager's own controllers for the CA and self-signed
// issuers, built from the cert-manager module (its controller binary is a module of its own that
// the Go module proxy does not serve). The integration tests run it against their API servers so
// that crossgate's CertificateRequests are approved and signed by cert-manager itself.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cert-manager/cert-manager/pkg/controller"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// The controllers run: issuers' readiness, the approver, and signing by CA and self-signed issuers.
var controllers = []string{
	"issuers", "clusterissuers", "certificaterequests-approver",
	"certificaterequests-issuer-ca", "certificaterequests-issuer-selfsigned",
}

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the API server")
	clusterNS := flag.String("cluster-resource-namespace", "cert-manager", "where ClusterIssuers' Secrets are")
	flag.Parse()
	if err := run(*kubeconfig, *clusterNS); err != nil {
		fmt.Fprintln(os.Stderr, "cert-manager-controller:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, clusterNS string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := controller.ContextOptions{Kubeconfig: kubeconfig, KubernetesAPIQPS: 50, KubernetesAPIBurst: 100}
	opts.ClusterResourceNamespace = clusterNS
	factory, err := controller.NewContextFactory(ctx, opts)
	if err != nil {
		return err
	}
	errc := make(chan error, len(controllers))
	for _, name := range controllers {
		fn, ok := controller.Known()[name]
		if !ok {
			return fmt.Errorf("controller %s is not registered", name)
		}
		c, err := fn(factory)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		go func() { errc <- c.Run(2, ctx) }()
	}
	cctx, err := factory.Build()
	if err != nil {
		return err
	}
	cctx.KubeSharedInformerFactory.Start(ctx.Done())
	cctx.SharedInformerFactory.Start(ctx.Done())
	fmt.Fprintln(os.Stderr, "cert-manager-controller: running", controllers)
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}
