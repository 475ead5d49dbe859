package controller

import (
	"context"
	"errors"
	"time"

	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// reconciler is one level-based reconcile loop (controller-runtime style):
// Reconcile brings the world in line with the caches for one key. It is
// never called concurrently for the same key. A nil error means done; a
// terminalError means the input is invalid and retrying cannot help (it is
// logged, not retried); any other error requeues the key with backoff.
type reconciler interface {
	Reconcile(ctx context.Context, key string) error
}

// terminalError marks an error that must not be retried.
type terminalError struct{ err error }

func (e terminalError) Error() string { return e.err.Error() }
func (e terminalError) Unwrap() error { return e.err }

// terminal wraps err so that the worker does not requeue the key.
func terminal(err error) error { return terminalError{err: err} }

// workQueue is a named rate-limited queue of object names with its reconciler.
type workQueue struct {
	name  string
	queue workqueue.TypedRateLimitingInterface[string]
	rec   reconciler
}

func newWorkQueue(name string, rec reconciler, maxDelay time.Duration) *workQueue {
	limiter := workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, maxDelay)
	return &workQueue{
		name:  name,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(limiter, workqueue.TypedRateLimitingQueueConfig[string]{Name: name}),
		rec:   rec,
	}
}

// add enqueues key for reconciliation (coalescing duplicates).
func (q *workQueue) add(key string) { q.queue.Add(key) }

// run processes keys with n workers until ctx is done, then shuts the queue down.
func (q *workQueue) run(ctx context.Context, n int) {
	defer q.queue.ShutDown()
	for range n {
		go wait.UntilWithContext(ctx, func(ctx context.Context) {
			for q.processNext(ctx) {
			}
		}, time.Second)
	}
	<-ctx.Done()
}

func (q *workQueue) processNext(ctx context.Context) bool {
	key, quit := q.queue.Get()
	if quit {
		return false
	}
	defer q.queue.Done(key)
	defer utilruntime.HandleCrashWithContext(ctx)
	q.handleErr(key, q.rec.Reconcile(ctx, key))
	return true
}

func (q *workQueue) handleErr(key string, err error) {
	var term terminalError
	switch {
	case err == nil:
		q.queue.Forget(key)
	case errors.As(err, &term):
		klog.ErrorS(err, "Reconcile failed; not retrying until the object changes", "queue", q.name, "key", key)
		q.queue.Forget(key)
	default:
		klog.ErrorS(err, "Reconcile failed; will retry", "queue", q.name, "key", key, "retries", q.queue.NumRequeues(key))
		q.queue.AddRateLimited(key)
	}
}
