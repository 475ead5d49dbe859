package netlab

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestDialContextFromNetNS: DialContext opens its socket inside the
// namespace: a port nobody listens on at a host on the underlay answers
// with a RST (ECONNREFUSED survives the wrapping), an address nobody holds
// does not answer, and a listener on another lab host accepts. The root
// namespace has no route to the underlay, so none of this works from there.
func TestDialContextFromNetNS(t *testing.T) {
	l := newTestLab(t, "nldial")
	a, err := l.AddHost("a", mustPrefix("198.18.0.250/24"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AddHost("b", mustPrefix("198.18.0.251/24"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := a.DialContext(ctx, "tcp", "198.18.0.251:9"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial a host's closed port from a: %v, want ECONNREFUSED", err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if conn, err := a.DialContext(short, "tcp", "198.18.0.99:9"); err == nil {
		conn.Close()
		t.Error("dial to an address nobody holds succeeded")
	}
	var ln net.Listener
	if err := inNetNS(b.Path, func() (err error) { ln, err = net.Listen("tcp4", "198.18.0.251:7"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := a.DialContext(ctx, "tcp", "198.18.0.251:7")
	if err != nil {
		t.Fatalf("dial a listener on b from a: %v", err)
	}
	conn.Close()
}
