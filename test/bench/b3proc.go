package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// ClientEnv, when set in the environment, makes the test binary act as B3's client process:
// "addr clients resources changes".
const ClientEnv = "CROSSGATE_B3_CLIENTS"

// ClientProfileEnv, when set, names the file of a CPU profile of the client process (the
// server's is go test's -cpuprofile).
const ClientProfileEnv = "CROSSGATE_B3_CLIENT_CPUPROFILE"

// fanOutResult is what one implementation measured.
type fanOutResult struct {
	lat      []time.Duration // each change's arrival at each client
	maxBytes int             // the largest change response
	cold     []time.Duration // each client's first full sync, all connecting at once
	resync   []time.Duration // each client's resync after the restart, all reconnecting at once
	resyncB  int             // the largest resync response
	// The server's CPU seconds in each phase.
	coldCore, changesCore, resyncCore float64
}

// fanOut serves a fresh implementation, runs the clients in a second process (the test binary
// run again, as a real fleet would be: the clients' work does not compete with the server's in
// one Go runtime), and measures on the wall clock, which both processes share:
//  1. the cold start: every client connects at once and syncs the whole state;
//  2. s.Changes changes, each reaching every client (B3);
//  3. a restart: the server is replaced by a fresh one holding the state after one more change,
//     and every client reconnects at once with the versions it holds (initial_resource_versions)
//     and is synced when it has the changed resource (B10).
func fanOut(s FanOut, fresh func() (serverv3.Server, publisher, []grpc.ServerOption)) (_ *fanOutResult, err error) {
	// serve starts a fresh implementation holding version v of the world.
	serve := func(v int) (*grpc.Server, string, publisher, error) {
		impl, publish, opts := fresh()
		if err := publish(v); err != nil {
			return nil, "", nil, err
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, "", nil, err
		}
		gs := grpc.NewServer(opts...)
		discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, impl)
		go gs.Serve(lis)
		return gs, lis.Addr().String(), publish, nil
	}
	gs, addr, publish, err := serve(0)
	if err != nil {
		return nil, err
	}
	defer gs.Stop()

	args := []string{"-test.run=^TestB3ClientProcess$", "-test.timeout=30m"}
	if p := os.Getenv(ClientProfileEnv); p != "" {
		args = append(args, "-test.cpuprofile="+p)
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d %d", ClientEnv, addr, s.Clients, s.Resources, s.Changes))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		// The clients end once resynced (writing their profile, if asked); a failed run is
		// ended at once.
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		grace := 30 * time.Second
		if err != nil {
			grace = 0
		}
		select {
		case <-exited:
		case <-time.After(grace):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	// A phase that does not end in time ends the client process, and with it the run.
	var watchdog *time.Timer
	arm := func() {
		if watchdog != nil {
			watchdog.Stop()
		}
		watchdog = time.AfterFunc(3*time.Minute, func() { _ = cmd.Process.Kill() })
	}
	arm()
	defer func() { watchdog.Stop() }()
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	next := func(want string) ([]string, error) {
		for lines.Scan() {
			if f := strings.Fields(lines.Text()); len(f) > 0 && strings.HasPrefix(f[0], "B3:") {
				if f[0] != want || len(f) < 2 {
					return nil, fmt.Errorf("client process: %s, want %s", lines.Text(), want)
				}
				return f, nil
			}
		}
		return nil, fmt.Errorf("client process ended: %w", lines.Err())
	}
	res := &fanOutResult{}
	cpu := cpuSeconds()
	for range s.Clients {
		f, err := next("B3:synced")
		if err != nil {
			return nil, fmt.Errorf("waiting for clients to sync: %w", err)
		}
		ns, _ := strconv.ParseInt(f[1], 10, 64)
		res.cold = append(res.cold, time.Duration(ns))
	}
	// B3 measures a steady state: as testing.B does before a benchmark, both processes pay the
	// cold start's garbage collection debt before the first change.
	if _, err := next("B3:settled"); err != nil {
		return nil, err
	}
	res.coldCore = cpuSeconds() - cpu
	runtime.GC()
	cpu = cpuSeconds()
	arrivals := func(want string, at int64, d *[]time.Duration, maxBytes *int) error {
		for range s.Clients {
			f, err := next(want)
			if err != nil {
				return err
			}
			when, _ := strconv.ParseInt(f[1], 10, 64)
			size, _ := strconv.Atoi(f[2])
			*d = append(*d, time.Duration(when-at))
			*maxBytes = max(*maxBytes, size)
		}
		return nil
	}
	for v := 1; v <= s.Changes; v++ {
		arm()
		at := time.Now().UnixNano()
		if err := publish(v); err != nil {
			return nil, err
		}
		if err := arrivals("B3:arrived", at, &res.lat, &res.maxBytes); err != nil {
			return nil, fmt.Errorf("waiting for change %d: %w", v, err)
		}
		_, _ = io.WriteString(stdin, "next\n") // the clients ACKed; the next change may come
	}

	res.changesCore = cpuSeconds() - cpu
	// The restart: the new server is up (with one more change) before the old one goes away.
	arm()
	gs2, addr2, _, err := serve(s.Changes + 1)
	if err != nil {
		return nil, err
	}
	defer gs2.Stop()
	gs.Stop()
	for range s.Clients {
		if _, err := next("B3:disconnected"); err != nil {
			return nil, fmt.Errorf("waiting for clients to see the restart: %w", err)
		}
	}
	arm()
	cpu = cpuSeconds()
	at := time.Now().UnixNano()
	_, _ = io.WriteString(stdin, "reconnect "+addr2+"\n")
	if err := arrivals("B3:resynced", at, &res.resync, &res.resyncB); err != nil {
		return nil, fmt.Errorf("waiting for clients to resync: %w", err)
	}
	res.resyncCore = cpuSeconds() - cpu
	return res, nil
}

// The fleet's streams are opened by method name: fleetCodec reads their responses.
const deltaMethod = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"

var deltaStream = &grpc.StreamDesc{StreamName: "DeltaAggregatedResources", ServerStreams: true, ClientStreams: true}

// clientProcess is the other side of fanOut.
func clientProcess(spec string, out io.Writer, in io.Reader) error {
	var addr string
	var clients, resources, changes int
	if _, err := fmt.Sscan(spec, &addr, &clients, &resources, &changes); err != nil {
		return err
	}
	names := make([]string, resources)
	index := make(map[string]int, resources)
	for i, e := range endpoints(resources, 0) {
		names[i] = e.ClusterName
		index[e.ClusterName] = i
	}
	dial := func(addr string) ([]*grpc.ClientConn, error) {
		conns := make([]*grpc.ClientConn, (clients+99)/100)
		for i := range conns {
			c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.ForceCodecV2(newFleetCodec())))
			if err != nil {
				return nil, err
			}
			conns[i] = c
		}
		return conns, nil
	}
	conns, err := dial(addr)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	emit := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		mu.Unlock()
	}
	gate := make([]chan struct{}, changes)
	for i := range gate {
		gate[i] = make(chan struct{})
	}
	reconnect := make(chan struct{})
	var conns2 []*grpc.ClientConn
	go func() { // the server says when a change has reached everyone, then where to reconnect
		sc := bufio.NewScanner(in)
		for i := 0; i < changes && sc.Scan(); i++ {
			close(gate[i])
		}
		if sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "reconnect" {
				var err error
				if conns2, err = dial(f[1]); err != nil {
					emit("B3:error %v", err)
					return
				}
				close(reconnect)
			}
		}
	}()
	node := &corev3.Node{Id: "bench"}
	start := time.Now()
	var synced sync.WaitGroup
	synced.Add(clients)
	go func() {
		synced.Wait()
		runtime.GC()
		emit("B3:settled 0")
	}()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			held := make([]string, resources) // the version held of each name
			holds := 0
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			st, err := conns[c/100].NewStream(ctx, deltaStream, deltaMethod)
			if err != nil {
				emit("B3:error %v", err)
				return
			}
			_ = st.SendMsg(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: names})
			recv := func() (*deltaSummary, error) {
				r := &deltaSummary{}
				if err := st.RecvMsg(r); err != nil {
					return nil, err
				}
				for _, x := range r.resources {
					if i, ok := index[x[0]]; ok {
						if held[i] == "" {
							holds++
						}
						held[i] = x[1]
					}
				}
				for _, name := range r.removed {
					if i, ok := index[name]; ok && held[i] != "" {
						held[i] = ""
						holds--
					}
				}
				return r, st.SendMsg(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResponseNonce: r.nonce})
			}
			for holds < resources { // the initial state may come in several responses
				if _, err := recv(); err != nil {
					emit("B3:error %v", err)
					return
				}
			}
			emit("B3:synced %d", time.Since(start).Nanoseconds())
			synced.Done()
			for i := range changes {
				r, err := recv()
				if err != nil {
					emit("B3:error %v", err)
					return
				}
				emit("B3:arrived %d %d", time.Now().UnixNano(), r.size)
				<-gate[i]
			}
			if err := st.RecvMsg(&deltaSummary{}); err == nil {
				emit("B3:error a response after the last change")
				return
			}
			// What the client holds, as it will tell the restarted server.
			versions := make(map[string]string, holds)
			for i, v := range held {
				if v != "" {
					versions[names[i]] = v
				}
			}
			req, err := proto.Marshal(&discoveryv3.DeltaDiscoveryRequest{
				Node: node, TypeUrl: resourcev3.EndpointType,
				ResourceNamesSubscribe: names, InitialResourceVersions: versions,
			})
			if err != nil {
				emit("B3:error %v", err)
				return
			}
			emit("B3:disconnected 0")
			<-reconnect
			if st, err = conns2[c/100].NewStream(ctx, deltaStream, deltaMethod); err != nil {
				emit("B3:error %v", err)
				return
			}
			_ = st.SendMsg(rawRequest(req))
			r, err := recv()
			if err != nil {
				emit("B3:error %v", err)
				return
			}
			emit("B3:resynced %d %d", time.Now().UnixNano(), r.size)
		})
	}
	wg.Wait()
	for _, c := range append(conns, conns2...) {
		c.Close()
	}
	return nil
}
