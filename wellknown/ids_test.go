package wellknown

import "testing"

func TestMeshSNI(t *testing.T) {
	sni := MeshSNI("httpbin", "httpbin", 8080)
	if sni != "8080.httpbin.httpbin.svc.clusterset.local" {
		t.Fatalf("MeshSNI = %q", sni)
	}
	ns, name, port, ok := ParseMeshSNI(sni)
	if !ok || ns != "httpbin" || name != "httpbin" || port != 8080 {
		t.Errorf("ParseMeshSNI(%q) = %s %s %d %v", sni, ns, name, port, ok)
	}
	for _, bad := range []string{
		"httpbin.httpbin.svc.clusterset.local",       // no port
		"0.httpbin.httpbin.svc.clusterset.local",     // port 0
		"08080.httpbin.httpbin.svc.clusterset.local", // not canonical
		"70000.httpbin.httpbin.svc.clusterset.local", // too large
		"8080.a.b.c.svc.clusterset.local",            // too many labels
		"8080..httpbin.svc.clusterset.local",         // empty name
		"8080.httpbin.httpbin.svc.cluster.local",     // another suffix
	} {
		if _, _, _, ok := ParseMeshSNI(bad); ok {
			t.Errorf("ParseMeshSNI(%q) accepted", bad)
		}
	}
}
