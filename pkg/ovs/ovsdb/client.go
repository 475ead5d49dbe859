// Package ovsdb is the node agent's OVSDB side: it creates the bridge, the
// vxlan0 and tun0 ports and the pods' ports through the Open_vSwitch database
// (libovsdb, models generated into ./vswitchd), and notices when
// ovsdb-server goes away.
//
// A Client keeps a monitor cache of the Open_vSwitch, Bridge, Port and
// Interface tables (only the columns this package uses, so statistics
// updates do not wake it up). Reads come from that cache; every write is one
// OVSDB transaction that also bumps Open_vSwitch.next_cfg, and the call
// returns only once ovs-vswitchd has applied it (cur_cfg caught up), as
// `ovs-vsctl` without --no-wait does. So after a successful call the cache
// reflects the write, ofports are assigned and bridge management sockets
// exist; if ovs-vswitchd is not running, writes block until ctx is done.
// Writes of concurrent callers that arrive while a transaction is in
// flight share the next one (group commit, batch.go), and every wait
// (cur_cfg, an ofport) is on the monitor cache, looked up by name index.
//
// Ensure and Delete methods compare the cache with the wanted state and send
// nothing when they agree: calling them again is cheap and changes nothing.
// A write that loses a race with another client (a uniqueness violation on a
// name) is retried from the refreshed cache.
//
// The generated models follow the OVS 3.1 schema (vswitchd/vswitch.ovsschema);
// Dial fails against an ovsdb-server whose schema lacks a column of the
// monitored tables (libovsdb validates the models against the server).
package ovsdb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ovn-org/libovsdb/cache"
	"github.com/ovn-org/libovsdb/client"
	"github.com/ovn-org/libovsdb/model"
	"github.com/ovn-org/libovsdb/ovsdb"
	"k8s.io/klog/v2"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb/vswitchd"
)

// ErrDisconnected is returned by every method once the connection to
// ovsdb-server is gone. A Client does not reconnect: make a new one.
var ErrDisconnected = errors.New("ovsdb: disconnected from ovsdb-server")

// ErrNotFound is wrapped by errors about a missing bridge or interface.
var ErrNotFound = errors.New("not found")

// disconnectPoll is how often the disconnect watcher double-checks the
// connection, in case libovsdb's one-shot notification found nobody
// listening.
const disconnectPoll = time.Second

// maxAttempts bounds the retries of a write that lost a race.
const maxAttempts = 3

// Client is a connected OVSDB client with a monitor cache of
// Open_vSwitch/Bridge/Port/Interface. All methods are safe for concurrent
// use.
type Client struct {
	cli client.Client

	disconnected chan struct{}
	closeOnce    sync.Once
	stop         chan struct{} // closed by Close or on disconnect: stops goroutines
	stopOnce     sync.Once

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every cache update
	hooks   []func()

	portKick chan struct{} // capacity 1: coalesced OnPortChange trigger

	batch batcher      // group commit of writes (batch.go)
	names atomic.Int64 // named UUID counter
}

// Dial connects to ovsdb-server at endpoint ("unix:/path/db.sock" or
// "tcp:host:port"), starts the monitor and returns once the cache holds the
// current contents. ctx bounds the connection and the initial monitor only.
func Dial(ctx context.Context, endpoint string) (*Client, error) {
	dbModel, err := model.NewClientDBModel("Open_vSwitch", map[string]model.Model{
		vswitchd.OpenvSwitchTable: &vswitchd.OpenvSwitch{},
		vswitchd.BridgeTable:      &vswitchd.Bridge{},
		vswitchd.PortTable:        &vswitchd.Port{},
		vswitchd.InterfaceTable:   &vswitchd.Interface{},
	})
	if err != nil {
		return nil, fmt.Errorf("ovsdb: client model: %w", err)
	}
	logger := klog.Background().WithName("libovsdb")
	cli, err := client.NewOVSDBClient(dbModel, client.WithEndpoint(endpoint), client.WithLogger(&logger))
	if err != nil {
		return nil, fmt.Errorf("ovsdb: %w", err)
	}
	if err := cli.Connect(ctx); err != nil {
		return nil, fmt.Errorf("ovsdb: connect %s: %w", endpoint, err)
	}
	c := &Client{
		cli:          cli,
		disconnected: make(chan struct{}),
		stop:         make(chan struct{}),
		changed:      make(chan struct{}),
		portKick:     make(chan struct{}, 1),
	}
	c.batch = batcher{transact: c.transact, opError: isOpError}
	// Listen for the disconnect before anything else can fail: libovsdb
	// sends its notification only to a receiver already waiting.
	watching := make(chan struct{})
	go c.watchDisconnect(cli.DisconnectNotify(), watching)
	<-watching

	cli.Cache().AddEventHandler(&cache.EventHandlerFuncs{
		AddFunc:    func(table string, _ model.Model) { c.onCacheEvent(table) },
		UpdateFunc: func(table string, _, _ model.Model) { c.onCacheEvent(table) },
		DeleteFunc: func(table string, _ model.Model) { c.onCacheEvent(table) },
	})

	var (
		ovsRow vswitchd.OpenvSwitch
		br     vswitchd.Bridge
		port   vswitchd.Port
		iface  vswitchd.Interface
	)
	mon := cli.NewMonitor(
		client.WithTable(&ovsRow, &ovsRow.Bridges, &ovsRow.NextCfg, &ovsRow.CurCfg),
		client.WithTable(&br, &br.Name, &br.Ports, &br.FailMode, &br.Protocols, &br.DatapathType),
		client.WithTable(&port, &port.Name, &port.Interfaces),
		client.WithTable(&iface, &iface.Name, &iface.Type, &iface.Options, &iface.ExternalIDs,
			&iface.Ofport, &iface.OfportRequest, &iface.MTURequest, &iface.MACInUse, &iface.Error),
	)
	if _, err := cli.Monitor(ctx, mon); err != nil {
		c.Close()
		return nil, fmt.Errorf("ovsdb: monitor %s: %w", endpoint, err)
	}
	go c.dispatchPortChanges()
	return c, nil
}

// Close disconnects. Disconnected's channel is closed too. Safe to call
// more than once.
func (c *Client) Close() {
	c.halt()
	c.cli.Close()
}

// Disconnected returns a channel closed when the connection to ovsdb-server
// drops (ovsdb-server exited or restarted) or after Close. The agent then
// restarts its OVS state (reference §4.2).
func (c *Client) Disconnected() <-chan struct{} { return c.disconnected }

// OnPortChange registers fn to be called when Interface rows are added,
// removed or change in a monitored column (name, type, options,
// external_ids, ofport, mac_in_use, error…), e.g. a pod port added by the
// CNI or by hand. Calls are coalesced — a burst of changes gives at least
// one call after the last change — and made from one goroutine, never from
// the cache's, so fn may call Client methods; fn must not block for long.
func (c *Client) OnPortChange(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hooks = append(c.hooks, fn)
}

func (c *Client) watchDisconnect(notify <-chan struct{}, watching chan<- struct{}) {
	ticker := time.NewTicker(disconnectPoll)
	defer ticker.Stop()
	close(watching)
	defer c.halt()
	for {
		select {
		case <-notify:
			return
		case <-c.stop:
			return
		case <-ticker.C:
			// libovsdb drops its cache when the connection is gone.
			if c.cli.Cache() == nil {
				return
			}
		}
	}
}

// halt marks the client as disconnected and stops its goroutines.
func (c *Client) halt() {
	c.closeOnce.Do(func() { close(c.disconnected) })
	c.stopOnce.Do(func() { close(c.stop) })
}

// onCacheEvent runs on libovsdb's cache goroutine: it must not block.
func (c *Client) onCacheEvent(table string) {
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	if table == vswitchd.InterfaceTable {
		select {
		case c.portKick <- struct{}{}:
		default: // a call is already pending: coalesce
		}
	}
}

func (c *Client) dispatchPortChanges() {
	for {
		select {
		case <-c.stop:
			return
		case <-c.portKick:
		}
		c.mu.Lock()
		hooks := append([]func(){}, c.hooks...)
		c.mu.Unlock()
		for _, fn := range hooks {
			fn()
		}
	}
}

// alive returns ErrDisconnected once the connection is gone.
func (c *Client) alive() error {
	select {
	case <-c.disconnected:
		return ErrDisconnected
	default:
		return nil
	}
}

// waitFor blocks until cond (evaluated against the cache after every cache
// update) reports done, or ctx ends, or the connection drops.
func (c *Client) waitFor(ctx context.Context, what string, cond func() (bool, error)) error {
	for {
		c.mu.Lock()
		changed := c.changed
		c.mu.Unlock()
		done, err := cond()
		if err != nil || done {
			return err
		}
		select {
		case <-changed:
		case <-c.disconnected:
			return fmt.Errorf("waiting for %s: %w", what, ErrDisconnected)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
	}
}

// root returns the single Open_vSwitch row.
func (c *Client) root(ctx context.Context) (vswitchd.OpenvSwitch, error) {
	var rows []vswitchd.OpenvSwitch
	if err := c.cli.List(ctx, &rows); err != nil {
		return vswitchd.OpenvSwitch{}, err
	}
	if len(rows) != 1 {
		return vswitchd.OpenvSwitch{}, fmt.Errorf("ovsdb: Open_vSwitch table has %d rows, want 1 (run `ovs-vsctl init`)", len(rows))
	}
	return rows[0], nil
}

// errRetry marks a transaction that failed on a uniqueness constraint: the
// cache was stale, the caller recomputes and tries again.
type errRetry struct{ err error }

func (e errRetry) Error() string { return e.err.Error() }
func (e errRetry) Unwrap() error { return e.err }

// commit runs ops in a transaction together with a next_cfg increment —
// shared with the writes of other goroutines arriving meanwhile (group
// commit, batch.go) — then waits until ovs-vswitchd reports cur_cfg >= the
// transaction's next_cfg. With no ops it does nothing.
func (c *Client) commit(ctx context.Context, what string, ops []ovsdb.Operation) error {
	if len(ops) == 0 {
		return nil
	}
	if err := c.alive(); err != nil {
		return err
	}
	next, err := c.batch.submit(ctx, ops)
	if err != nil {
		return fmt.Errorf("ovsdb: %s: %w", what, err)
	}
	return c.waitFor(ctx, fmt.Sprintf("ovs-vswitchd to apply %s (next_cfg %d)", what, next), func() (bool, error) {
		r, err := c.root(ctx)
		if err != nil {
			return false, err
		}
		return r.CurCfg >= next, nil
	})
}

// transactTimeout bounds one transaction of the batcher (ovsdb-server
// only; the wait for ovs-vswitchd is each write's own).
const transactTimeout = 30 * time.Second

// opError marks a transaction that ovsdb-server refused because of one of
// its operations (the batcher then commits each write alone).
type opError struct{ err error }

func (e opError) Error() string { return e.err.Error() }
func (e opError) Unwrap() error { return e.err }

func isOpError(err error) bool {
	var oe opError
	return errors.As(err, &oe)
}

// transact commits the operations of every write of batch, plus the
// next_cfg increment, as one transaction and returns the new next_cfg.
func (c *Client) transact(batch []*batchReq) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), transactTimeout)
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	root, err := c.root(ctx)
	if err != nil {
		return 0, err
	}
	var ops []ovsdb.Operation
	for _, r := range batch {
		ops = append(ops, r.ops...)
	}
	bumpRow := vswitchd.OpenvSwitch{UUID: root.UUID}
	bump, err := c.cli.Where(&bumpRow).Mutate(&bumpRow, model.Mutation{
		Field: &bumpRow.NextCfg, Mutator: ovsdb.MutateOperationAdd, Value: 1,
	})
	if err != nil {
		return 0, err
	}
	ops = append(ops, bump...)
	ops = append(ops, ovsdb.Operation{
		Op:      ovsdb.OperationSelect,
		Table:   vswitchd.OpenvSwitchTable,
		Where:   []ovsdb.Condition{ovsdb.NewCondition("_uuid", ovsdb.ConditionEqual, ovsdb.UUID{GoUUID: root.UUID})},
		Columns: []string{"next_cfg"},
	})
	results, err := c.cli.Transact(ctx, ops...)
	if err != nil {
		if errors.Is(err, client.ErrNotConnected) {
			err = ErrDisconnected
		}
		return 0, err
	}
	if err := resultError(results); err != nil {
		return 0, opError{err}
	}
	if len(results) != len(ops) || len(results[len(ops)-1].Rows) != 1 {
		return 0, fmt.Errorf("unexpected transaction result %+v", results)
	}
	nextF, ok := results[len(ops)-1].Rows[0]["next_cfg"].(float64)
	if !ok {
		return 0, fmt.Errorf("next_cfg not a number in %+v", results[len(ops)-1].Rows[0])
	}
	return int(nextF), nil
}

// Stats returns how many writes this client committed, in how many OVSDB
// transactions (fewer when concurrent writes shared them).
func (c *Client) Stats() (writes, transactions int64) { return c.batch.stats() }

// namedUUID returns a fresh named UUID for a row a write creates: unique
// within the client, so that writes sharing a transaction do not collide.
func (c *Client) namedUUID(kind string) string {
	return fmt.Sprintf("%s%d", kind, c.names.Add(1))
}

// resultError turns the per-operation errors of a transaction into one
// error; a uniqueness violation becomes errRetry.
func resultError(results []ovsdb.OperationResult) error {
	var msgs []string
	retry := false
	for _, r := range results {
		if r.Error == "" {
			continue
		}
		if r.Error == "constraint violation" && strings.Contains(r.Details, "duplicate") {
			retry = true
		}
		msgs = append(msgs, strings.TrimSuffix(r.Error+": "+r.Details, ": "))
	}
	if len(msgs) == 0 {
		return nil
	}
	err := errors.New(strings.Join(msgs, "; "))
	if retry {
		return errRetry{err}
	}
	return err
}

// write computes a transaction from the cache with plan and commits it,
// recomputing when it lost a race with another writer.
func (c *Client) write(ctx context.Context, what string, plan func() ([]ovsdb.Operation, error)) error {
	var err error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if err = c.alive(); err != nil {
			return err
		}
		var ops []ovsdb.Operation
		if ops, err = plan(); err != nil {
			return err
		}
		err = c.commit(ctx, what, ops)
		var r errRetry
		if !errors.As(err, &r) {
			return err
		}
		// Give the monitor a moment to deliver the row we collided with.
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}
