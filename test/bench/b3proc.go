package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
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

// fanOutProcess is fanOut with the clients in a second process (the test binary run again),
// as a real fleet would be: the clients' work does not compete with the server's in one Go
// runtime. Latency is measured on the wall clock, which both processes share.
func fanOutProcess(s FanOut, impl serverv3.Server, publish publisher) (lat []time.Duration, maxBytes int, syncs []time.Duration, err error) {
	if err := publish(0); err != nil {
		return nil, 0, nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, 0, nil, err
	}
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, impl)
	go gs.Serve(lis)
	defer gs.Stop()

	cmd := exec.Command(os.Args[0], "-test.run=^TestB3ClientProcess$", "-test.timeout=30m")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d %d", ClientEnv, lis.Addr(), s.Clients, s.Resources, s.Changes))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return nil, 0, nil, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	next := func() ([]string, error) {
		for lines.Scan() {
			if f := strings.Fields(lines.Text()); len(f) > 0 && strings.HasPrefix(f[0], "B3:") {
				return f, nil
			}
		}
		return nil, fmt.Errorf("client process ended: %v", lines.Err())
	}
	for range s.Clients {
		f, err := next()
		if err != nil || f[0] != "B3:synced" {
			return nil, 0, nil, fmt.Errorf("waiting for clients to sync: %v %v", f, err)
		}
		ns, _ := strconv.ParseInt(f[1], 10, 64)
		syncs = append(syncs, time.Duration(ns))
	}
	for v := 1; v <= s.Changes; v++ {
		at := time.Now().UnixNano()
		if err := publish(v); err != nil {
			return nil, 0, nil, err
		}
		for range s.Clients {
			f, err := next()
			if err != nil || f[0] != "B3:arrived" {
				return nil, 0, nil, fmt.Errorf("waiting for change %d: %v %v", v, f, err)
			}
			when, _ := strconv.ParseInt(f[1], 10, 64)
			size, _ := strconv.Atoi(f[2])
			lat = append(lat, time.Duration(when-at))
			maxBytes = max(maxBytes, size)
		}
		_, _ = io.WriteString(stdin, "next\n") // the clients ACKed; the next change may come
	}
	return lat, maxBytes, syncs, nil
}

// clientProcess is the other side of fanOutProcess.
func clientProcess(spec string, out io.Writer, in io.Reader) error {
	var addr string
	var clients, resources, changes int
	if _, err := fmt.Sscan(spec, &addr, &clients, &resources, &changes); err != nil {
		return err
	}
	names := make([]string, resources)
	for i, e := range endpoints(resources, 0) {
		names[i] = e.ClusterName
	}
	conns := make([]*grpc.ClientConn, (clients+99)/100)
	for i := range conns {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
		if err != nil {
			return err
		}
		conns[i] = c
		defer c.Close()
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
	go func() { // the server says when a change has reached everyone
		sc := bufio.NewScanner(in)
		for i := 0; i < changes && sc.Scan(); i++ {
			close(gate[i])
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conns[c/100]).DeltaAggregatedResources(context.Background())
			if err != nil {
				emit("B3:error %v", err)
				return
			}
			node := &corev3.Node{Id: "bench"}
			_ = st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: names})
			for got := 0; got < resources; {
				r, err := st.Recv()
				if err != nil {
					emit("B3:error %v", err)
					return
				}
				got += len(r.GetResources())
				_ = st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResponseNonce: r.GetNonce()})
			}
			emit("B3:synced %d", time.Since(start).Nanoseconds())
			for i := range changes {
				r, err := st.Recv()
				if err != nil {
					emit("B3:error %v", err)
					return
				}
				emit("B3:arrived %d %d", time.Now().UnixNano(), proto.Size(r))
				_ = st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResponseNonce: r.GetNonce()})
				<-gate[i]
			}
		})
	}
	wg.Wait()
	return nil
}
