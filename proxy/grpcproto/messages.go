package grpcproto

import "encoding/binary"

// prefixLen is the length of the prefix before each gRPC message: a
// compressed flag (1 byte) and the message length (4 bytes, big-endian).
const prefixLen = 5

// MessageCounter counts the length-prefixed messages of one direction of a
// gRPC call (grpc/grpc doc/PROTOCOL-HTTP2.md, Length-Prefixed-Message) as
// the body goes by in chunks of any size: a prefix split over several
// chunks, many messages in one chunk and zero-length messages are all
// counted as the call's peer would read them. It is what Envoy's grpc_stats
// filter counts as request_message_count and response_message_count.
//
// It only follows the framing: payloads are skipped, not read, and the
// compressed flag is not checked (a flag other than 0 or 1 is the peer's to
// refuse). The zero value is ready to count a new stream. A MessageCounter
// is a plain value with no lock and no allocation: keep one per direction
// of a call and feed it from one goroutine at a time.
type MessageCounter struct {
	// remaining is how many payload bytes of the current message are yet
	// to come; it is only meaningful while prefix == prefixLen.
	remaining uint32
	// prefix is how many bytes of the current message's prefix have been
	// seen: 0 between messages, 1–4 inside a prefix, prefixLen inside a
	// payload.
	prefix uint8
	// length accumulates the length bytes of a prefix split across chunks.
	length uint32
}

// Feed consumes the next chunk of the stream and returns how many messages
// were completed by it: a message counts in the chunk that holds its last
// byte, and a zero-length message in the chunk that holds the last byte of
// its prefix. An empty chunk completes nothing.
func (c *MessageCounter) Feed(p []byte) (messages int) {
	for len(p) > 0 {
		if c.prefix == prefixLen {
			// Inside a payload: skip it.
			if uint64(len(p)) < uint64(c.remaining) {
				c.remaining -= uint32(len(p))
				return messages
			}
			p = p[c.remaining:]
			c.remaining, c.prefix = 0, 0
			messages++
			continue
		}
		if c.prefix == 0 && len(p) >= prefixLen {
			// A whole prefix in the chunk: the common case.
			c.length = binary.BigEndian.Uint32(p[1:prefixLen])
			p = p[prefixLen:]
		} else {
			// A prefix split across chunks: take what this one has.
			for c.prefix < prefixLen && len(p) > 0 {
				if c.prefix > 0 { // byte 0 is the compressed flag
					c.length = c.length<<8 | uint32(p[0])
				}
				c.prefix++
				p = p[1:]
			}
			if c.prefix < prefixLen {
				return messages
			}
		}
		if c.length == 0 {
			c.prefix = 0
			messages++
			continue
		}
		c.prefix, c.remaining, c.length = prefixLen, c.length, 0
	}
	return messages
}

// InMessage reports whether the bytes fed so far end inside a message (its
// prefix or its payload). At the end of a stream it means the last message
// was cut short: the peer never sees it, and it was not counted.
func (c *MessageCounter) InMessage() bool { return c.prefix != 0 }

// Reset makes c ready to count a new stream, as the zero value is.
func (c *MessageCounter) Reset() { *c = MessageCounter{} }
