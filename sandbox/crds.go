package sandbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/yaml"

	"github.com/crossgate-io/crossgate/charts"
)

// CRDs parses the chart's CRDs: crossgate's, SMI's and Gateway API's.
func CRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	files, names, err := charts.CRDs()
	if err != nil {
		return nil, err
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, n := range names {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(files[n], crd); err != nil {
			return nil, fmt.Errorf("parsing CRD %s: %w", n, err)
		}
		if crd.Kind != "CustomResourceDefinition" {
			return nil, fmt.Errorf("%s is a %s, not a CustomResourceDefinition", n, crd.Kind)
		}
		out = append(out, crd)
	}
	if len(out) == 0 {
		return nil, errors.New("the chart holds no CRD: run `make manifests`")
	}
	return out, nil
}

// installCRDs creates (or updates) every CRD and waits until each is Established and its
// resource is listed by discovery, so that clients can use it at once.
func installCRDs(ctx context.Context, c *Cluster) error {
	crds, err := CRDs()
	if err != nil {
		return err
	}
	cs, err := apiextensionsclient.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	api := cs.ApiextensionsV1().CustomResourceDefinitions()
	for _, crd := range crds {
		_, err := api.Create(ctx, crd, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			var cur *apiextensionsv1.CustomResourceDefinition
			if cur, err = api.Get(ctx, crd.Name, metav1.GetOptions{}); err == nil {
				crd.ResourceVersion = cur.ResourceVersion
				_, err = api.Update(ctx, crd, metav1.UpdateOptions{})
			}
		}
		if err != nil {
			return fmt.Errorf("%s: installing CRD %s: %w", c.Name, crd.Name, err)
		}
	}
	disc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, crd := range crds {
		for {
			err := crdServed(ctx, api, disc, crd)
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%s: CRD %s not served: %w", c.Name, crd.Name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

type crdGetter interface {
	Get(context.Context, string, metav1.GetOptions) (*apiextensionsv1.CustomResourceDefinition, error)
}

func crdServed(ctx context.Context, api crdGetter, disc discovery.DiscoveryInterface, want *apiextensionsv1.CustomResourceDefinition) error {
	cur, err := api.Get(ctx, want.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	established := false
	for _, cond := range cur.Status.Conditions {
		if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
			established = true
		}
	}
	if !established {
		return errors.New("not Established yet")
	}
	for _, v := range want.Spec.Versions {
		if !v.Served {
			continue
		}
		gv := want.Spec.Group + "/" + v.Name
		list, err := disc.ServerResourcesForGroupVersion(gv)
		if err != nil {
			return err
		}
		found := false
		for _, r := range list.APIResources {
			if r.Name == want.Spec.Names.Plural {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("%s not in discovery of %s yet", want.Spec.Names.Plural, gv)
		}
	}
	return nil
}
