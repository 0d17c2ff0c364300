// Package h2 is Sightline's frame-level HTTP/2 engine: it serves HTTP/2
// clients (h2c with prior knowledge, or TLS with ALPN h2) and proxies each
// stream onto a stream of an upstream HTTP/2 connection, frame by frame,
// without net/http requests, header maps or per-stream goroutines.
//
// # Pieces
//
//   - Server serves the downstream connections of one listener
//     (ServeConn, Shutdown); PeekConn.Sniff tells HTTP/2 prior knowledge
//     from HTTP/1.x on a shared plaintext port.
//   - Pool is one upstream host's HTTP/2 connections (NewPool). Upstream
//     bundles it with the host's net/http pool and is what a cluster's
//     upstream factory returns as host.Upstream (NewUpstream).
//   - A call pairs a downstream half (the client's stream) with an
//     upstream half (the stream on a pooled connection); each half has its
//     own half-closed state and flow-control windows (RFC 9113 §5.1).
//
// # Goroutines and locks
//
// Every connection has a reader, which handles frames inline (routing,
// picking a host and queueing the upstream HEADERS happen on the
// downstream reader), and a writer, which owns the HPACK encoder and a
// bufio.Writer, drains the connection's queues and flushes only when they
// are empty. A connection's state is guarded by its own mutex; nothing on
// the request path is shared between connections except the atomics of
// host and call reference counts. Only calls to http1 clusters use a
// goroutine of their own (net/http's RoundTrip blocks).
//
// # Frames
//
// Frame headers are read and checked by x/net's Framer (sizes against the
// advertised SETTINGS_MAX_FRAME_SIZE, HEADERS/CONTINUATION ordering), and
// other frames are parsed by it. DATA payloads are read straight into
// pooled buffers that travel to the other connection, and header
// fragments go to a per-connection hpack.Decoder whose emit function
// checks each field (RFC 9113 §8.2-8.3) and appends it to a reused slice.
// Framer.ReadMetaHeaders is not used on purpose: it allocates a frame, a
// field slice and closures per header block, and copying DATA out of a
// reused frame would cost a copy the direct read avoids. Header blocks
// are always decoded and re-encoded, never forwarded as bytes.
//
// # Flow control
//
// A WINDOW_UPDATE goes back to the sender of a stream's DATA only once the
// bytes have been written on the other connection, so a slow receiver
// back-pressures its sender and the proxy holds at most one stream window
// per stream. Connection windows are refunded as DATA arrives: the bytes
// then sit in a bounded per-stream queue, and holding connection credit
// for them would let one stalled stream starve the others.
package h2
