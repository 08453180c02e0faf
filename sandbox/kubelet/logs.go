package kubelet

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Container logs are kept as kubelet's CRI runtimes keep them, one line per output line:
// "<RFC3339Nano time> <stdout|stderr> F <line>", so that the API server's pods/log options
// (sinceTime, sinceSeconds, tailLines, timestamps, limitBytes, follow) can be answered.

// logWriter timestamps the lines of a container's streams into its log file, and closes the
// file once every stream has ended.
type logWriter struct {
	mu sync.Mutex
	wg sync.WaitGroup
	f  *os.File
}

func newLogWriter(f *os.File) *logWriter { return &logWriter{f: f} }

// pipe returns the write end for a process's stream; the lines read from it go to the log until
// every holder of the write end closes it.
func (l *logWriter) pipe(stream string) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer r.Close()
		br := bufio.NewReaderSize(r, 64<<10)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				l.mu.Lock()
				_, _ = fmt.Fprintf(l.f, "%s %s F %s\n", time.Now().UTC().Format(time.RFC3339Nano), stream, strings.TrimSuffix(line, "\n"))
				l.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	return w, nil
}

// closeWhenDone closes the file once the streams have ended.
func (l *logWriter) closeWhenDone() {
	go func() {
		l.wg.Wait()
		_ = l.f.Close()
	}()
}

// logPath is a container's log file.
func (k *Kubelet) logPath(ns, pod, container string) string {
	return filepath.Join(k.o.LogDir, ns+"_"+pod+"_"+container+".log")
}

// serveLogs serves kubelet's /containerLogs/<namespace>/<pod>/<container> on a loopback port
// over TLS with a certificate of its own (kube-apiserver, given no kubelet CA, does not verify
// it), which the Node's daemonEndpoints name: `kubectl logs` works on the node's pods. It
// returns the port.
func (k *Kubelet) serveLogs(ctx context.Context) (int, error) {
	cert, err := selfSigned(k.o.Node)
	if err != nil {
		return 0, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", k.containerLogs)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// containerLogs answers a pods/log request as kubelet does.
func (k *Kubelet) containerLogs(w http.ResponseWriter, r *http.Request) {
	path := k.logPath(r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container"))
	q := r.URL.Query()
	var since time.Time
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			http.Error(w, "sinceTime: "+err.Error(), http.StatusBadRequest)
			return
		}
		since = t
	}
	if v := q.Get("sinceSeconds"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			http.Error(w, "sinceSeconds: not a positive number", http.StatusBadRequest)
			return
		}
		since = time.Now().Add(-time.Duration(n) * time.Second)
	}
	tail := -1
	if v := q.Get("tailLines"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			http.Error(w, "tailLines: not a number", http.StatusBadRequest)
			return
		}
		tail = n
	}
	limit := int64(-1)
	if v := q.Get("limitBytes"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			http.Error(w, "limitBytes: not a positive number", http.StatusBadRequest)
			return
		}
		limit = n
	}
	timestamps, follow := q.Get("timestamps") == "true", q.Get("follow") == "true"
	b, err := os.ReadFile(path)
	if err != nil {
		http.Error(w, "no log for this container on the sandbox node (not started yet?)", http.StatusNotFound)
		return
	}
	var out []string
	offset := len(b)
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if formatted, ok := logLine(line, since, timestamps); ok {
			out = append(out, formatted)
		}
	}
	if tail >= 0 && len(out) > tail {
		out = out[len(out)-tail:]
	}
	var dst io.Writer = w
	if limit > 0 {
		dst = &limitWriter{w: w, n: limit}
	}
	w.Header().Set("Content-Type", "text/plain")
	for _, l := range out {
		if _, err := io.WriteString(dst, l); err != nil {
			return
		}
	}
	for follow { // until the client goes
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
		b, err := os.ReadFile(path)
		if err != nil || len(b) < offset {
			return
		}
		rest := b[offset:]
		end := bytes.LastIndexByte(rest, '\n') + 1
		offset += end
		for _, line := range strings.SplitAfter(string(rest[:end]), "\n") {
			if formatted, ok := logLine(line, since, timestamps); ok {
				if _, err := io.WriteString(dst, formatted); err != nil {
					return
				}
			}
		}
	}
}

// logLine formats one line of a CRI log (without its time unless timestamps), if it is
// complete and not before since.
func logLine(line string, since time.Time, timestamps bool) (string, bool) {
	ts, rest, ok := strings.Cut(line, " ")
	if !ok || !strings.HasSuffix(line, "\n") {
		return "", false
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil || t.Before(since) {
		return "", false
	}
	_, rest, _ = strings.Cut(rest, " ") // the stream
	_, rest, _ = strings.Cut(rest, " ") // the tag (F: a full line)
	if timestamps {
		return ts + " " + rest, true
	}
	return rest, true
}

// limitWriter stops after n bytes.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.w.Write(p)
	l.n -= int64(n)
	return n, err
}

// selfSigned is the node's serving certificate (ECDSA P-256, a year).
func selfSigned(host string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{host}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
