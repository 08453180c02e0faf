// Package layout checks the house rules on imports between crossgate's packages
// (shared/reference/style.md): api depends on apimachinery only; translator never imports
// client-go or controller-runtime; xds never imports translator; translator/ir is a leaf;
// product code never imports test/....
package layout

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/crossgate-io/crossgate"

type pkg struct {
	ImportPath string
	Imports    []string
}

func packages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func isStd(path string) bool { return !strings.Contains(strings.SplitN(path, "/", 2)[0], ".") }

func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

func TestImportRules(t *testing.T) {
	rules := []struct {
		pkgPrefix string
		allowed   func(imp string) bool
		rule      string
	}{
		{module + "/api", func(imp string) bool {
			return isStd(imp) || under(imp, "k8s.io/apimachinery") || under(imp, module+"/api")
		}, "api depends on the standard library and k8s.io/apimachinery only"},
		{module + "/wellknown", isStd, "wellknown is a leaf: standard library only"},
		{
			module + "/translator/ir", func(imp string) bool { return isStd(imp) || imp == module+"/wellknown" },
			"translator/ir is a leaf: standard library and wellknown only",
		},
		{
			module + "/dataplane", func(imp string) bool { return !under(imp, module+"/translator") || imp == module+"/translator/ir" },
			"dataplane takes its names from wellknown, never from the translator",
		},
		{
			module + "/inject", func(imp string) bool { return !under(imp, module+"/translator") || imp == module+"/translator/ir" },
			"inject takes its names from wellknown, never from the translator",
		},
		{module + "/controllers/federation", func(imp string) bool {
			return !under(imp, module+"/translator") || imp == module+"/translator/ir"
		}, "the federation's controller takes its names from wellknown; only its pure plan reads the translator's export rules"},
		{module + "/controllers/federation/plan", func(imp string) bool {
			return !under(imp, "k8s.io/client-go") && !under(imp, "sigs.k8s.io/controller-runtime")
		}, "the federation's plan is pure: no client-go, no controller-runtime"},
		{module + "/cmd/crossgate-controller", func(imp string) bool {
			return !under(imp, "google.golang.org/grpc") && !under(imp, module+"/xds/cache") &&
				!under(imp, module+"/controllers/federation") && !under(imp, module+"/inject")
		}, "crossgate-controller's main parses flags only: internal/app assembles and runs the controller"},
		{module + "/translator", func(imp string) bool {
			return !under(imp, "k8s.io/client-go") && !under(imp, "sigs.k8s.io/controller-runtime") &&
				!under(imp, "github.com/envoyproxy") && !under(imp, module+"/xds")
		}, "translator is pure: no client-go, controller-runtime, Envoy protos or xds"},
		{
			module, func(imp string) bool { return !under(imp, module+"/test") },
			"product code never imports test/... (tests may)",
		},
		{
			module + "/xds/cache", func(imp string) bool { return imp != module+"/xds/translate" },
			"xds/cache serves xds/resources and never imports the builder, xds/translate",
		},
		{
			module + "/xds/resources", func(imp string) bool { return isStd(imp) || under(imp, "github.com/envoyproxy/go-control-plane") },
			"xds/resources is the neutral type between builder and cache: Envoy's protos only",
		},
		{module + "/xds", func(imp string) bool {
			return !under(imp, module+"/translator") || under(imp, module+"/translator/ir")
		}, "xds reads the IR, never the translator"},
	}
	seen := 0
	for _, p := range packages(t) {
		for _, r := range rules {
			if !under(p.ImportPath, r.pkgPrefix) {
				continue
			}
			if r.pkgPrefix == module+"/translator" && under(p.ImportPath, module+"/translator/ir") {
				continue // has its own, stricter rule
			}
			if r.pkgPrefix == module+"/controllers/federation" && under(p.ImportPath, module+"/controllers/federation/plan") {
				continue // the pure stage, which applies the translator's ExportCondition
			}
			if r.pkgPrefix == module && under(p.ImportPath, module+"/test") {
				continue // the tests' own packages
			}
			seen++
			for _, imp := range p.Imports {
				if !r.allowed(imp) {
					t.Errorf("%s imports %s: %s", p.ImportPath, imp, r.rule)
				}
			}
		}
	}
	if seen == 0 {
		t.Fatal("no package matched any rule: the module path or layout changed")
	}
}

// TestWireFormatsInOnePlace: node IDs ("kind~ns/name") and SPIFFE IDs are formatted and parsed
// by wellknown only; a hand-built one elsewhere drifts from the parser the xDS server uses.
func TestWireFormatsInOnePlace(t *testing.T) {
	out, err := exec.Command("git", "-C", "../..", "grep", "--untracked", "-nE", `"(spiffe://|sidecar~|gateway~|proxyless~)`, "--", "*.go").Output()
	if err != nil && len(out) == 0 {
		return // git grep exits 1 when nothing matches
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		file, _, _ := strings.Cut(line, ":")
		if strings.HasPrefix(file, "wellknown/") || strings.HasSuffix(file, "_test.go") || strings.HasPrefix(file, "test/") {
			continue
		}
		if strings.Contains(line, "//") && strings.Index(line, "//") < strings.Index(line, `"`) {
			continue // a comment
		}
		t.Errorf("%s: format node and SPIFFE IDs with wellknown.NodeID / wellknown.SPIFFEID", line)
	}
}

// TestBinariesDoNotLinkTesting: test helpers stay out of the product's binaries (sandbox's live
// in its export_test.go and test/internal/sbtest). (go-control-plane's pkg/log imports testing
// itself; only crossgate's packages are held to it.)
func TestBinariesDoNotLinkTesting(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"/cmd/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !under(f[0], module) {
			continue
		}
		for _, imp := range f[1:] {
			if imp == "testing" {
				t.Errorf("%s imports testing and is linked into a command", f[0])
			}
		}
	}
}

// TestReasonsAreConstants: condition and Event reasons are written with the constants of
// api/flomesh/v1alpha1/conditions.go (or Gateway API's), never as literals in product code.
func TestReasonsAreConstants(t *testing.T) {
	out, err := exec.Command("git", "-C", "../..", "grep", "--untracked", "-nE",
		`Reason: *"[A-Z]|cond\([^,]+, [^,]+, "|Problem\("|Eventf\([^,]+, [^,]+, [^,]+, "[A-Z]`,
		"--", "*.go", ":!*_test.go", ":!test/").Output()
	if err != nil && len(out) == 0 {
		return // git grep exits 1 when nothing matches
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		t.Errorf("%s: use a reason constant (api/flomesh/v1alpha1/conditions.go)", line)
	}
}

// TestSharingIsExplicit: the xDS builder shares what the IR says is shared (ir.OutboundSet by
// name), never what happens to be the same pointer: a map keyed by an IR pointer is that.
func TestSharingIsExplicit(t *testing.T) {
	out, _ := exec.Command("git", "-C", "../..", "grep", "--untracked", "-nE", `map\[\*ir\.`, "--", "xds/*.go").Output()
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("sharing decided by IR pointer identity:\n%s", s)
	}
}
