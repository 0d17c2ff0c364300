'use strict';
// A @grpc/grpc-js client of sightline.e2e.Echo (see echo_service.js),
// plaintext, for the end-to-end tests. Makes one call and prints one JSON
// object per line: {"message": I, "bytes": N, "intact": BOOL} for each
// message received, then {"code": C, "details": "..."} with the call's
// status, and exits.
//
// Usage: node grpc_client.js HOST:PORT Unary SIZE
//        node grpc_client.js HOST:PORT Stream COUNT SIZE
//        node grpc_client.js HOST:PORT DieAfterFirst SIZE
const grpc = require('@grpc/grpc-js');
const { EchoService, patterned } = require('./echo_service');

const [target, method, a, b] = process.argv.slice(2);
const Client = grpc.makeGenericClientConstructor(EchoService, 'Echo');
const client = new Client(target, grpc.credentials.createInsecure());
const deadline = new Date(Date.now() + 30000);
const print = (o) => console.log(JSON.stringify(o));
const done = (err) => {
  print({ code: err ? err.code : grpc.status.OK, details: err ? err.details : '' });
  client.close();
};

if (method === 'Unary') {
  const req = patterned(7, Number(a));
  client.Unary(req, { deadline }, (err, resp) => {
    if (!err) print({ message: 0, bytes: resp.length, intact: req.equals(resp) });
    done(err);
  });
} else {
  const req = method === 'Stream' ? Buffer.from(`${a} ${b}`, 'ascii') : patterned(7, Number(a));
  const size = method === 'Stream' ? Number(b) : Number(a);
  const call = client[method](req, { deadline });
  let i = 0;
  call.on('data', (m) => {
    const want = method === 'Stream' ? patterned(i, size) : req;
    print({ message: i++, bytes: m.length, intact: want.equals(m) });
  });
  let ended = false;
  call.on('error', (err) => {
    if (!ended) {
      ended = true;
      done(err);
    }
  });
  call.on('end', () => {
    // 'status' follows 'end' for a call that succeeded.
  });
  call.on('status', (st) => {
    if (!ended && st.code === grpc.status.OK) {
      ended = true;
      done(null);
    }
  });
}
