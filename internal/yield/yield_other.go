//go:build !unix

package yield

import "runtime"

// A Yielder here yields as runtime.Gosched does: the pipe it waits on
// elsewhere is not in this platform's network poller.
type Yielder struct{}

// New makes a Yielder.
func New() *Yielder { return &Yielder{} }

// Yield gives way to the goroutines that are runnable.
func (*Yielder) Yield() { runtime.Gosched() }

// Close does nothing.
func (*Yielder) Close() {}
