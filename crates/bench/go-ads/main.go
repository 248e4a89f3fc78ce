// go-ads: the per-client memory baseline of bench-xds. An ADS server on grpc-go, the
// gRPC stack go-control-plane (and so Envoy Gateway, Contour and Istio) serves xDS
// with, started with go-control-plane's example server options. It answers each
// subscription with a response read from a file at start and shared by every stream, so
// what it costs per client is the transport and a stream, as for `portcullis` in the
// same run. Built by `make go-ads` for the benchmark only; never part of `make test`.
//
// Usage: go-ads DIR. DIR holds N.sotw and N.delta: an encoded DiscoveryResponse and
// DeltaDiscoveryResponse per type. Prints "ADDR 0", then answers each stdin line
// "acked N" with "<streams that ACKed every type> <VmRSS MiB> <VmHWM MiB>" once N
// streams have (or after 300 s), and exits when stdin closes.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// raw passes messages through as bytes: the server never decodes a resource.
type raw struct{}

func (raw) Marshal(v interface{}) ([]byte, error) { return v.([]byte), nil }
func (raw) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = data
	return nil
}
func (raw) String() string { return "proto" }

// kind is one of the two ADS protocols: where its requests keep the type and nonce.
type kind struct {
	typeField, nonceField protowire.Number
	responses             map[string][]byte
}

var (
	// DiscoveryRequest: type_url = 4, response_nonce = 5.
	sotw = kind{4, 5, map[string][]byte{}}
	// DeltaDiscoveryRequest: type_url = 2, response_nonce = 6.
	delta = kind{2, 6, map[string][]byte{}}
	// Streams that have ACKed every type.
	acked atomic.Int64
)

// fields returns the string fields a and b of a protobuf message.
func fields(msg []byte, a, b protowire.Number) (string, string, error) {
	var va, vb string
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return "", "", protowire.ParseError(n)
		}
		msg = msg[n:]
		if typ == protowire.BytesType && (num == a || num == b) {
			v, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return "", "", protowire.ParseError(m)
			}
			if num == a {
				va = string(v)
			} else {
				vb = string(v)
			}
			msg = msg[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, msg)
		if m < 0 {
			return "", "", protowire.ParseError(m)
		}
		msg = msg[m:]
	}
	return va, vb, nil
}

// handler answers a type's first request with its response and counts the stream once
// every type it was answered has been ACKed.
func (k *kind) handler(_ interface{}, stream grpc.ServerStream) error {
	answered := map[string]bool{}
	counted := false
	for {
		var req []byte
		if err := stream.RecvMsg(&req); err != nil {
			return err
		}
		t, nonce, err := fields(req, k.typeField, k.nonceField)
		if err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		resp, ok := k.responses[t]
		if !ok {
			return status.Errorf(codes.InvalidArgument, "no resources of type %q", t)
		}
		if nonce == "" {
			if err := stream.SendMsg(resp); err != nil {
				return err
			}
			continue
		}
		answered[t] = true
		if !counted && len(answered) == len(k.responses) {
			counted = true
			acked.Add(1)
		}
	}
}

// load reads DIR/*.sotw and DIR/*.delta, keyed by the type_url (field 4) of each.
func load(dir string) error {
	for _, p := range []struct {
		glob string
		k    *kind
	}{{"*.sotw", &sotw}, {"*.delta", &delta}} {
		files, err := filepath.Glob(filepath.Join(dir, p.glob))
		if err != nil {
			return err
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			t, _, err := fields(b, 4, 5)
			if err != nil || t == "" {
				return fmt.Errorf("%s: no type_url: %v", f, err)
			}
			p.k.responses[t] = b
		}
	}
	if len(sotw.responses) == 0 || len(sotw.responses) != len(delta.responses) {
		return fmt.Errorf("%s: want as many .sotw as .delta responses, at least one", dir)
	}
	return nil
}

// memory returns VmRSS and VmHWM in MiB, after handing freed heap back to the OS (the
// baseline's best case).
func memory() (float64, float64) {
	debug.FreeOSMemory()
	b, _ := os.ReadFile("/proc/self/status")
	var rss, hwm float64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			hwm = kb / 1024
		}
	}
	return rss, hwm
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go-ads DIR")
		os.Exit(2)
	}
	if err := load(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// go-control-plane's example server's options.
	server := grpc.NewServer(
		grpc.CustomCodec(raw{}),
		grpc.MaxConcurrentStreams(1000000),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 5 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 30 * time.Second, PermitWithoutStream: true}),
	)
	server.RegisterService(&grpc.ServiceDesc{
		ServiceName: "envoy.service.discovery.v3.AggregatedDiscoveryService",
		HandlerType: (*interface{})(nil),
		Streams: []grpc.StreamDesc{
			{StreamName: "StreamAggregatedResources", Handler: sotw.handler, ServerStreams: true, ClientStreams: true},
			{StreamName: "DeltaAggregatedResources", Handler: delta.handler, ServerStreams: true, ClientStreams: true},
		},
	}, struct{}{})
	go server.Serve(lis)
	fmt.Printf("%s 0\n", lis.Addr())

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		want, _ := strconv.ParseInt(strings.TrimPrefix(strings.TrimSpace(in.Text()), "acked "), 10, 64)
		deadline := time.Now().Add(300 * time.Second)
		for acked.Load() < want && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		rss, hwm := memory()
		fmt.Printf("%d %.1f %.1f\n", acked.Load(), rss, hwm)
	}
	server.Stop()
}
