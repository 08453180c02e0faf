package charts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/strvals"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// ReleaseName is the Helm release crossgate installs as.
const ReleaseName = "crossgate"

// Load returns the embedded chart, as Helm loads a chart directory.
func Load() (*chart.Chart, error) {
	var files []*loader.BufferedFile
	err := fs.WalkDir(FS, "crossgate", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(FS, p)
		if err != nil {
			return err
		}
		files = append(files, &loader.BufferedFile{Name: strings.TrimPrefix(p, "crossgate/"), Data: b})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the embedded chart: %w", err)
	}
	c, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("loading the embedded chart: %w", err)
	}
	return c, nil
}

// Values parses --set style assignments (key=value, comma-separated or repeated) into chart
// values.
func Values(sets []string) (map[string]any, error) {
	vals := map[string]any{}
	for _, s := range sets {
		if err := strvals.ParseInto(s, vals); err != nil {
			return nil, fmt.Errorf("--set %q: %w (want key=value, such as clusterSet.name=cluster-1)", s, err)
		}
	}
	return vals, nil
}

// Template renders the chart as `helm template` does, without a cluster: the manifests in
// install order, as one YAML stream; with crds, the CRDs come first.
func Template(ctx context.Context, namespace string, values map[string]any, crds bool) (string, error) {
	c, err := Load()
	if err != nil {
		return "", err
	}
	in := action.NewInstall(&action.Configuration{})
	in.DryRun, in.ClientOnly, in.Replace, in.IncludeCRDs = true, true, true, crds
	in.ReleaseName, in.Namespace = ReleaseName, namespace
	rel, err := in.RunWithContext(ctx, c, values)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if crds {
		for _, f := range c.CRDObjects() {
			fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", f.Filename, f.File.Data)
		}
	}
	b.WriteString(rel.Manifest)
	return b.String(), nil
}

// Objects splits a rendered YAML stream into its objects, skipping empty documents.
func Objects(manifest string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("decoding the rendered chart: %w", err)
		}
		if len(u.Object) == 0 {
			continue
		}
		out = append(out, u)
	}
}
