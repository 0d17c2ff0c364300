package listener

import "sync/atomic"

// ConnLimit counts the connections open against a cap: one listener's
// limits.max_connections, or server.max_connections for every listener
// of the process. A listener that a reload rebuilds is given the same
// ConnLimit as the one it replaces, so that the connections the old one
// still drains count against the cap too. Its methods are safe to call
// from any goroutine and never block.
type ConnLimit struct {
	max  atomic.Int64 // 0: no cap
	open atomic.Int64
}

// NewConnLimit returns a ConnLimit capped at max connections; 0 is no cap.
func NewConnLimit(max int) *ConnLimit {
	c := &ConnLimit{}
	c.SetMax(max)
	return c
}

// SetMax changes the cap, as a reload does. Connections already open stay
// open when the new cap is below their number; new ones are refused until
// enough have closed.
func (c *ConnLimit) SetMax(max int) { c.max.Store(int64(max)) }

// Max returns the cap; 0 is no cap.
func (c *ConnLimit) Max() int { return int(c.max.Load()) }

// Open returns the number of connections counted now.
func (c *ConnLimit) Open() int { return int(c.open.Load()) }

// acquire counts one more connection and reports true, or reports false
// when the cap is reached. A nil ConnLimit has no cap.
func (c *ConnLimit) acquire() bool {
	if c == nil {
		return true
	}
	for {
		n, max := c.open.Load(), c.max.Load()
		if max > 0 && n >= max {
			return false
		}
		if c.open.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release counts one connection closed.
func (c *ConnLimit) release() {
	if c != nil {
		c.open.Add(-1)
	}
}
