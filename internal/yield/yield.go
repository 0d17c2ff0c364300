// Package yield lets a goroutine that runs a long loop give way to the
// network.
//
// The Go scheduler asks the network poller for ready sockets when no
// goroutine is runnable, and otherwise only from its monitor thread,
// every 10 ms. A loop that works through thousands of connections (an
// accept loop under a connection storm, a sweep that closes timed-out
// connections) keeps goroutines runnable the whole time, and the clients
// whose bytes have arrived wait for it: with the process on one P, a
// victim client's calls waited up to 20 ms behind a storm of new
// connections. runtime.Gosched does not help (the yielding goroutine
// runs again before the network is polled), nor does a short sleep (a
// goroutine whose sleep has ended runs next, ahead of those waiting).
//
// A Yielder waits for the network poller itself: it writes a byte into a
// pipe of its own and waits for the pipe to be readable, which the
// poller reports on its next pass, with every other socket ready by
// then. A process with nothing else to run polls at once, so the loop
// loses no time; a busy one first runs what was runnable, then what the
// network readied, then the loop.
package yield
