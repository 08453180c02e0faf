package wellknown

import "testing"

func TestMeshSNI(t *testing.T) {
	if sni := MeshSNI("httpbin", "httpbin", 8080); sni != "8080.httpbin.httpbin.svc.clusterset.local" {
		t.Fatalf("MeshSNI = %q", sni)
	}
	// The longest names still make a host name (253 characters at most).
	long := "a23456789012345678901234567890123456789012345678901234567890123"
	if sni := MeshSNI(long, long, 65535); len(sni) > 253 {
		t.Errorf("MeshSNI of the longest names is %d characters", len(sni))
	}
}
