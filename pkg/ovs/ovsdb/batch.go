package ovsdb

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/ovn-org/libovsdb/ovsdb"
)

// Group commit: writes that arrive while a transaction is in flight wait
// for it and then go together, as one transaction with one next_cfg bump.
// The CNI server adds and deletes ports for many pods at once; one
// transaction per port meant one ovsdb-server commit, one update to every
// monitor (ovs-vswitchd, the agent, the CNI server) and, often, one
// ovs-vswitchd reconfiguration per port. Together they cost about one.
//
// Each write still waits for ovs-vswitchd to apply its own transaction
// (cur_cfg through the monitor), so the batcher only ever waits for
// ovsdb-server, never for ovs-vswitchd: while ovs-vswitchd reconfigures,
// the next batch is already committed.
//
// A transaction is all-or-nothing, so one bad write would fail its whole
// batch: when a batch of several writes fails on an operation (not on the
// connection), each write is committed again alone and gets its own
// result. Writes are independent (different ports); the CNI server never
// writes one port from two requests at once.

// batchReq is one write waiting for its transaction.
type batchReq struct {
	ctx  context.Context
	ops  []ovsdb.Operation
	done chan struct{}
	// Set before done is closed: the next_cfg of the transaction that
	// carried the write, or its error.
	next int
	err  error
}

// batcher queues writes and commits them in batches through transact,
// which commits the operations of every request of a batch as one
// transaction and returns the next_cfg it set, or an error; opError tells
// a failed operation (retried alone) from a failed transport.
type batcher struct {
	transact func(reqs []*batchReq) (int, error)
	opError  func(error) bool

	mu      sync.Mutex
	queue   []*batchReq
	running bool

	writes, txns atomic.Int64
}

// submit queues ops and waits for the transaction that carried them (or
// ctx). A write whose ctx ends before its batch is sent is not sent.
func (b *batcher) submit(ctx context.Context, ops []ovsdb.Operation) (int, error) {
	r := &batchReq{ctx: ctx, ops: ops, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, r)
	start := !b.running
	b.running = true
	b.mu.Unlock()
	if start {
		go b.drain()
	}
	select {
	case <-r.done:
		return r.next, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// drain commits batches until the queue is empty.
func (b *batcher) drain() {
	for {
		b.mu.Lock()
		batch := b.queue
		b.queue = nil
		if len(batch) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.run(live(batch))
	}
}

// live drops (and answers) the requests whose caller gave up.
func live(batch []*batchReq) []*batchReq {
	out := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			close(r.done)
			continue
		}
		out = append(out, r)
	}
	return out
}

// run commits batch as one transaction, or each of its writes alone when
// one of them made the transaction fail.
func (b *batcher) run(batch []*batchReq) {
	if len(batch) == 0 {
		return
	}
	b.writes.Add(int64(len(batch)))
	b.txns.Add(1)
	res, err := b.transact(batch)
	if err != nil && len(batch) > 1 && b.opError(err) {
		b.writes.Add(-int64(len(batch)))
		for _, r := range batch {
			b.run([]*batchReq{r})
		}
		return
	}
	for _, r := range batch {
		r.next, r.err = res, err
		close(r.done)
	}
}

// stats returns how many writes were committed in how many transactions.
func (b *batcher) stats() (writes, txns int64) { return b.writes.Load(), b.txns.Load() }
