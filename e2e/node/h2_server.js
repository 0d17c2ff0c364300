'use strict';
// An h2c server on 127.0.0.1 written with Node's own http2 module, for the
// end-to-end tests. Every request gets a 200 with a body of BODY_BYTES
// bytes (byte i is i % 251, so that a lost or repeated frame shows), with
// a content-length on /sized and without one elsewhere, and the stream is
// then ended as Node's server can end one: RST_STREAM with NO_ERROR after
// the data, and no DATA frame carrying END_STREAM.
//
// stream.close(NGHTTP2_NO_ERROR) would end the writable side first, and
// whether that END_STREAM goes out before the RST_STREAM depends on the
// peer's flow-control window at that moment (with a window left it does,
// with none it does not). stream.destroy() without an error resets with
// NO_ERROR and sends no END_STREAM, whatever the window; it is called from
// the last write's callback, once every byte has been handed to the
// socket, so nothing is dropped here.
//
// Usage: node h2_server.js [port]   (0 or nothing: any free port)
// Prints "listening PORT" once it accepts connections, and
// "closed STREAM_ID RST_CODE" each time a stream has ended.
const http2 = require('node:http2');

const BODY_BYTES = 1 << 20;
const CHUNK = 16 << 10;

function chunk(offset) {
  const b = Buffer.allocUnsafe(Math.min(CHUNK, BODY_BYTES - offset));
  for (let i = 0; i < b.length; i++) b[i] = (offset + i) % 251;
  return b;
}

const server = http2.createServer();
server.on('stream', (stream, headers) => {
  const head = { ':status': 200, 'content-type': 'application/octet-stream' };
  if (headers[':path'] === '/sized') head['content-length'] = String(BODY_BYTES);
  stream.respond(head);
  let offset = 0;
  // Writes the body, honouring backpressure, and never ends the writable
  // side: the stream is reset with NO_ERROR once the last chunk is sent.
  const pump = () => {
    while (offset < BODY_BYTES) {
      const b = chunk(offset);
      offset += b.length;
      const last = offset === BODY_BYTES;
      const more = stream.write(b, last ? () => stream.destroy() : undefined);
      if (!more && !last) {
        stream.once('drain', pump);
        return;
      }
    }
  };
  pump();
  stream.on('close', () => {
    console.log(`closed ${stream.id} ${stream.rstCode}`);
  });
  stream.on('error', () => {});
});
server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
