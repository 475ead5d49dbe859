package openflow

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// conn is one OpenFlow 1.3 connection to a bridge's management socket. A
// reader goroutine hands every message to the request waiting for its xid
// (replies, multipart parts, errors) and answers echo requests; writes are
// serialized, each batch of messages in one write. When the connection
// fails, every waiting request fails with ErrDisconnected and the conn is
// dead for good: the Bridge dials a new one.
type conn struct {
	nc  net.Conn
	wmu sync.Mutex // serializes writes

	mu      sync.Mutex
	calls   map[uint32]*call
	watches map[*watch]struct{}
	next    uint32 // next xid
	err     error  // why the connection died; nil while alive
	dead    chan struct{}
}

// call is a request waiting for its reply (or its error).
type call struct {
	done  chan struct{}
	multi bool     // a multipart request: complete on the last part
	parts [][]byte // reply bodies (multipart: each part after its multipart header)
	err   error
}

// watch collects the errors OVS sends for a range of xids (the messages of
// a bundle), which have no reply otherwise.
type watch struct {
	first, last uint32
	errs        map[uint32]*OFPError
}

// handshakeTimeout bounds the hello exchange when ctx has no deadline.
const handshakeTimeout = 10 * time.Second

// dial connects to the socket at path and negotiates OpenFlow 1.3.
func dial(ctx context.Context, path string) (*conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDisconnected, err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(handshakeTimeout)
	}
	_ = nc.SetDeadline(deadline)
	br := bufio.NewReaderSize(nc, 1<<16)
	if err := handshake(nc, br); err != nil {
		nc.Close()
		return nil, fmt.Errorf("openflow handshake on %s: %w", path, err)
	}
	_ = nc.SetDeadline(time.Time{})
	c := &conn{nc: nc, calls: map[uint32]*call{}, watches: map[*watch]struct{}{}, next: 1, dead: make(chan struct{})}
	go c.read(br)
	return c, nil
}

// handshake sends our hello (version 1.3) and checks the peer's.
func handshake(nc net.Conn, br *bufio.Reader) error {
	var m message
	m.hello(0)
	if _, err := nc.Write(m.b); err != nil {
		return fmt.Errorf("%w: %w", ErrDisconnected, err)
	}
	h, body, err := readMessage(br)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDisconnected, err)
	}
	switch {
	case h.typ == typeError:
		return fmt.Errorf("hello refused: %w (does the bridge allow OpenFlow13?)", decodeError(body))
	case h.typ != typeHello:
		return fmt.Errorf("expected hello, got message type %d", h.typ)
	case h.version < version13 || !helloAllows13(body):
		return fmt.Errorf("the bridge does not speak OpenFlow 1.3 (its hello: version %#x)", h.version)
	}
	return nil
}

// helloAllows13 reports whether a hello's version bitmap, if any, has
// OpenFlow 1.3.
func helloAllows13(body []byte) bool {
	r := &reader{b: body}
	for r.left() >= 4 {
		typ, length := r.u16(), int(r.u16())
		if length < 4 {
			return false
		}
		elem := r.take((length+7)/8*8 - 4)
		if typ == 1 && len(elem) >= 4 {
			return binary.BigEndian.Uint32(elem)&(1<<version13) != 0
		}
	}
	return true
}

// readMessage reads one message and returns its header and body.
func readMessage(br *bufio.Reader) (header, []byte, error) {
	var hb [headerLen]byte
	if _, err := io.ReadFull(br, hb[:]); err != nil {
		return header{}, nil, err
	}
	h := parseHeader(hb[:])
	if h.length < headerLen {
		return h, nil, fmt.Errorf("bad message length %d", h.length)
	}
	body := make([]byte, int(h.length)-headerLen)
	if _, err := io.ReadFull(br, body); err != nil {
		return h, nil, err
	}
	return h, body, nil
}

// read is the reader goroutine.
func (c *conn) read(br *bufio.Reader) {
	for {
		h, body, err := readMessage(br)
		if err != nil {
			c.fail(err)
			return
		}
		switch h.typ {
		case typeEchoRequest:
			var m message
			off := m.start(typeEchoReply, h.xid)
			m.b = append(m.b, body...)
			m.finish(off)
			// Not inline: a bundle being written holds the write lock, and
			// the reader must keep reading meanwhile.
			go func() { _ = c.send(m.b) }()
		case typeError:
			c.deliverError(h.xid, decodeError(body))
		default:
			c.deliver(h, body)
		}
	}
}

// deliver hands a reply to its call; a multipart reply completes the call
// on its last part. Messages nobody waits for are dropped.
func (c *conn) deliver(h header, body []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl := c.calls[h.xid]
	if cl == nil {
		return
	}
	if cl.multi && h.typ == typeMultipartReply && len(body) >= 8 {
		cl.parts = append(cl.parts, body[8:])
		if binary.BigEndian.Uint16(body[2:])&multipartReplyMore != 0 {
			return
		}
	} else {
		cl.parts = append(cl.parts, body)
	}
	delete(c.calls, h.xid)
	close(cl.done)
}

func (c *conn) deliverError(xid uint32, e *OFPError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for w := range c.watches {
		if xid >= w.first && xid <= w.last {
			if w.errs == nil {
				w.errs = map[uint32]*OFPError{}
			}
			w.errs[xid] = e
		}
	}
	if cl := c.calls[xid]; cl != nil {
		cl.err = e
		delete(c.calls, xid)
		close(cl.done)
	}
}

// fail marks the connection dead and fails every waiting call.
func (c *conn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = fmt.Errorf("%w: %w", ErrDisconnected, err)
	_ = c.nc.Close()
	for xid, cl := range c.calls {
		cl.err = c.err
		delete(c.calls, xid)
		close(cl.done)
	}
	close(c.dead)
}

// close ends the connection (its calls fail).
func (c *conn) close() { c.fail(errors.New("closed")) }

// alive reports whether the connection still works.
func (c *conn) alive() bool {
	select {
	case <-c.dead:
		return false
	default:
		return true
	}
}

// xids reserves n consecutive transaction IDs and returns the first.
func (c *conn) xids(n int) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if uint64(c.next)+uint64(n) > 1<<32-1 {
		c.next = 1
	}
	first := c.next
	c.next += uint32(n)
	return first
}

// expect registers a call for the reply to xid.
func (c *conn) expect(xid uint32, multi bool) *call {
	cl := &call{done: make(chan struct{}), multi: multi}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		cl.err = c.err
		close(cl.done)
		return cl
	}
	c.calls[xid] = cl
	return cl
}

// forget drops a call that will not be waited for any more.
func (c *conn) forget(xid uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.calls, xid)
}

// watchErrors starts collecting errors for xids first..last.
func (c *conn) watchErrors(first, last uint32) *watch {
	w := &watch{first: first, last: last}
	c.mu.Lock()
	c.watches[w] = struct{}{}
	c.mu.Unlock()
	return w
}

func (c *conn) unwatch(w *watch) {
	c.mu.Lock()
	delete(c.watches, w)
	c.mu.Unlock()
}

// firstError returns the error of the lowest xid of w, if any.
func (c *conn) firstError(w *watch) (uint32, *OFPError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var best uint32
	var err *OFPError
	for xid, e := range w.errs {
		if err == nil || xid < best {
			best, err = xid, e
		}
	}
	return best, err
}

// send writes a batch of messages.
func (c *conn) send(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.deadErr(); err != nil {
		return err
	}
	if _, err := c.nc.Write(b); err != nil {
		c.fail(err)
		return c.deadErr()
	}
	return nil
}

// deadErr returns why the connection died, or nil.
func (c *conn) deadErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// wait waits for a call; when ctx ends first, the connection is closed (a
// half-done exchange leaves it in an unknown state) and ctx's error is
// returned.
func (c *conn) wait(ctx context.Context, cl *call) error {
	select {
	case <-cl.done:
		return cl.err
	case <-ctx.Done():
		c.close()
		return ctx.Err()
	}
}

// roundTrip sends one request built by build with a fresh xid and waits
// for its reply; multi requests collect every part.
func (c *conn) roundTrip(ctx context.Context, multi bool, build func(m *message, xid uint32)) ([][]byte, error) {
	xid := c.xids(1)
	var m message
	build(&m, xid)
	if m.err != nil {
		return nil, m.err
	}
	cl := c.expect(xid, multi)
	if err := c.send(m.b); err != nil {
		c.forget(xid)
		return nil, err
	}
	if err := c.wait(ctx, cl); err != nil {
		return nil, err
	}
	return cl.parts, nil
}
