package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/resources"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// Check compares what the xDS cache serves with a full translation and build of the cluster's
// objects as reader returns them (an API server client: the state now, not the informers'): the
// same keys, and in each the same resources with the same bytes, secrets aside (their
// certificates are issued per publication). It returns nil when they agree, else the first
// differences. Whatever path the publisher took, incremental or full, must agree once it has
// published the state reader returns.
func (p *Publisher) Check(ctx context.Context, reader client.Reader) error {
	in, err := p.input(ctx, reader, func(ctx context.Context) ([]translator.EndpointSlice, error) {
		var list discoveryv1.EndpointSliceList
		if err := reader.List(ctx, &list); err != nil {
			return nil, err
		}
		out := make([]translator.EndpointSlice, len(list.Items))
		for i := range list.Items {
			out[i] = *translator.CompactEndpointSlice(&list.Items[i])
		}
		return out, nil
	})
	if err != nil {
		return err
	}
	res := translator.Translate(in)
	out, _ := translate.Build(&res.IR) // what fails to build is left out, as the publisher does
	want := map[string]map[string][]byte{}
	add := func(key string, r *resources.Resources) error {
		m, err := flatten(r)
		want[key] = m
		return err
	}
	var errs []error
	for id, r := range out.Sidecars {
		ns, sa, _ := strings.Cut(id, "/")
		errs = append(errs, add(wellknown.Sidecar(ns, sa).String(), r))
	}
	for id, r := range out.Proxyless {
		ns, sa, _ := strings.Cut(id, "/")
		errs = append(errs, add(wellknown.Proxyless(ns, sa).String(), r))
	}
	for id, r := range out.Gateways {
		ns, name, _ := strings.Cut(id, "/")
		errs = append(errs, add(wellknown.Gateway(ns, name).String(), r))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	p.mu.Lock()
	keys := maps.Clone(p.published)
	p.mu.Unlock()
	for k := range want {
		keys[k] = true
	}
	var diffs []string
	for _, key := range slices.Sorted(maps.Keys(keys)) {
		served, _, _ := p.xds.Dump(key)
		got := map[string][]byte{}
		for _, r := range served {
			if r.Type != resourcev3.SecretType {
				got[r.Type+" "+r.Name] = r.Any.GetValue()
			}
		}
		for _, name := range slices.Sorted(maps.Keys(want[key])) {
			switch b, ok := got[name]; {
			case !ok:
				diffs = append(diffs, fmt.Sprintf("%s: %s is not served", key, name))
			case string(b) != string(want[key][name]):
				diffs = append(diffs, fmt.Sprintf("%s: %s differs", key, name))
			}
		}
		for _, name := range slices.Sorted(maps.Keys(got)) {
			if _, ok := want[key][name]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s: %s is served but not in the full build", key, name))
			}
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	if len(diffs) > 10 {
		diffs = append(diffs[:10], fmt.Sprintf("and %d more", len(diffs)-10))
	}
	return fmt.Errorf("the xDS cache differs from a full translation: %s", strings.Join(diffs, "; "))
}

// flatten marshals a proxy's resources by "type name", secrets aside, as the cache holds them:
// a name in two parts is the later (shared) part's.
func flatten(r *resources.Resources) (map[string][]byte, error) {
	out := map[string][]byte{}
	var errs []error
	put := func(typ, name string, m proto.Message) {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		errs = append(errs, err)
		out[typ+" "+name] = b
	}
	for part := range r.Parts() {
		for _, x := range part.Listeners {
			put(resourcev3.ListenerType, x.Name, x)
		}
		for _, x := range part.Routes {
			put(resourcev3.RouteType, x.Name, x)
		}
		for _, x := range part.Clusters {
			put(resourcev3.ClusterType, x.Name, x)
		}
		for _, x := range part.Endpoints {
			put(resourcev3.EndpointType, x.ClusterName, x)
		}
	}
	return out, errors.Join(errs...)
}
